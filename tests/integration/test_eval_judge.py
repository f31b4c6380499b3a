"""`--protocol vlmevalkit` asks the judge (the RL judge's client, over real HTTP to the stand-in chat server of
test_rl_judge.py) only where VLMEvalKit's rules decide nothing; its reply goes through the same rules; three
replies that decide nothing end in VLMEvalKit's (here seeded) random pick; MME-RealWorld never asks."""

import threading
from http.server import ThreadingHTTPServer

import pytest

from tests.integration.test_rl_judge import StandIn
from tests.unit.test_eval_protocol import _png, _run
from thyme_core import catalog
from thyme_core.eval import benchmarks, evaluate, vlmevalkit
from thyme_core.eval.benchmarks import BenchRow


@pytest.fixture
def judge_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    StandIn.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_judge_only_where_the_rules_decide_nothing(tmp_path, home, judge_url):
    StandIn.plan = ["The closest option is B."]
    img = _png()
    rows = [BenchRow("0", "Which animal", {"A": "cat", "B": "dog"}, "B", "x", image_b64=img),
            BenchRow("1", "Which animal", {"A": "cat", "B": "dog"}, "B", "x", image_b64=img)]
    responses = {"HR:0": "<answer>B</answer>", "HR:1": "<answer>a sleepy puppy on a mat</answer>"}
    benchmarks.write_tsv(tmp_path / "HR.tsv", rows)
    _run(home, tmp_path / "HR.tsv", responses, evaluate.EvalScoring(protocol="vlmevalkit", judge_url=judge_url))
    _, got = catalog.query(home, "SELECT index, choice, matched_by, correct FROM eval_results ORDER BY index")
    assert got == [("0", "B", "rule", True), ("1", "B", "judge", True)]
    assert len(StandIn.seen) == 1  # row 0 was decided by the rules
    prompt = StandIn.seen[0][1]["messages"][0]["content"]
    assert "Options: A. cat\nB. dog\nAnswer: a sleepy puppy on a mat\nYour output: " in prompt


def test_three_undecided_replies_end_in_a_seeded_pick(judge_url):
    from thyme_core.rl.judge import Judge, JudgeConfig

    StandIn.plan = ["I cannot tell."]
    judge = Judge(JudgeConfig(base_url=judge_url, max_retries=0))
    options = {"A": "cat", "B": "dog", "C": "cow"}
    first = vlmevalkit.choose("something else", "Which?", options, regex_only=False, judge=judge, seed="run:7")
    again = vlmevalkit.choose("something else", "Which?", options, regex_only=False, judge=judge, seed="run:7")
    assert first == again and first[1] == "judge_failed" and first[0] in [*options, "Z"]
    assert len(StandIn.seen) == 2 * vlmevalkit.JUDGE_TRIES
    assert vlmevalkit.choose("blah blah", "Q", options, regex_only=True, judge=judge) == ("", "regex")
    assert len(StandIn.seen) == 2 * vlmevalkit.JUDGE_TRIES  # MME-RealWorld: regex only, no call
