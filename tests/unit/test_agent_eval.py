"""VLMEvalKit TSV reading, the scripted backend's script, evaluation shards (scores, re-run skipping), the
trajectory store in SQL, and the agent modules' doctests."""

import base64
import doctest
import importlib
import json

import pytest

from thyme_core import catalog
from thyme_core.eval import benchmarks
from thyme_core.synth.benchmark import write_demo_benchmark
from thyme_core.eval import evaluate
from thyme_core.agent.backends.scripted import ScriptedBackend, load_responses, script_of
from thyme_core.agent.backends.base import GenerationRequest
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.errors import ThymeError


def test_tsv_reader_resolves_image_references_and_quoted_cells(tmp_path):
    img = base64.b64encode(b"\x89PNG fake").decode()
    path = tmp_path / "b.tsv"
    path.write_text(
        "index\timage\tquestion\tA\tB\tC\tanswer\tcategory\n"
        f'10\t{img}\t"Say ""hi""\nplease"\tyes\tno\t\tA\tchat\n'  # quoted cell with a tab-free newline
        "11\t10\tSame image?\tyes\tno\tnan\tB\tchat\n"  # image refers to row 10; "nan" option dropped
    )
    rows = benchmarks.read_rows(path, 0, 2)
    assert [r.index for r in rows] == ["10", "11"]
    assert rows[0].question == 'Say "hi"\nplease' and rows[0].options == {"A": "yes", "B": "no"}
    assert rows[1].image_b64 == img and rows[1].options == {"A": "yes", "B": "no"}
    assert benchmarks.read_rows(path, 1, 2)[0].image_b64 == img  # the referenced row is outside the range
    assert benchmarks.count_rows(path) == 2


def test_tsv_without_required_columns_is_a_clear_error(tmp_path):
    (tmp_path / "x.tsv").write_text("id\tquestion\n1\tq\n")
    with pytest.raises(ThymeError, match="missing columns: index, image, answer"):
        benchmarks.read_rows(tmp_path / "x.tsv", 0, 1)


def test_scripted_backend_continues_its_script_and_ends_with_eos():
    backend = ScriptedBackend("a<code>x</code>\n<sandbox_output>1</sandbox_output>\nb<answer>C</answer> tail")
    req = lambda done, stop=("</code>", "</answer>"), cap=100: GenerationRequest([], [], [], [], done, cap, 0.0, stop)
    assert backend.generate(req("")).text == "a<code>x</code>"
    g = backend.generate(req("a<code>x</code>"))
    assert (g.text, g.finish, g.stop) == ("\nb<answer>C</answer>", "stop", "</answer>")
    g = backend.generate(req("a<code>x</code>\nb<answer>C</answer>"))
    assert (g.text, g.finish, g.ids[-1]) == (" tail", "eos", backend.codec.token_id("<|im_end|>"))
    assert backend.generate(req("", cap=3)).finish == "length"
    with pytest.raises(ThymeError, match="left its script"):
        backend.generate(req("zzz"))


def test_response_files(tmp_path):
    (tmp_path / "r.txt").write_text("<answer>A</answer>")
    (tmp_path / "r.jsonl").write_text(json.dumps({"index": 3, "response": "x"}) + "\n")
    assert load_responses(tmp_path / "r.txt") == "<answer>A</answer>"
    assert load_responses(tmp_path / "r.jsonl") == {"3": "x"}
    assert script_of("<code>c</code>\n<sandbox_output>o</sandbox_output>\n\nnext") == "<code>c</code>\n\nnext"


def test_eval_shards_score_exactly_and_rerun_skips_finished_ones(tmp_path, home):
    tsv, responses = write_demo_benchmark(tmp_path / "bench", n=6)
    spec = BackendSpec("scripted", response_file=str(responses))
    config = AgentConfig(isolation="none")  # trusted, generated code; the flow test uses bwrap
    shards = evaluate.plan(tsv, spec, config, shard_rows=4)
    assert [(s.start, s.stop) for s in shards] == [(0, 4), (4, 6)]
    outcomes = [evaluate.eval_shard(s, home, spec, config) for s in shards]
    assert [(o.samples, o.correct, o.reused) for o in outcomes] == [(4, 2, False), (2, 2, False)]  # right: 1, 2, 4, 5
    again = [evaluate.eval_shard(s, home, spec, config) for s in evaluate.plan(tsv, spec, config, shard_rows=4)]
    assert [(o.samples, o.correct, o.reused) for o in again] == [(4, 2, True), (2, 2, True)]

    _, rows = catalog.query(home, "SELECT index, choice, answer, correct FROM eval_results ORDER BY index::INT")
    assert rows == [("0", "B", "A", False), ("1", "B", "B", True), ("2", "C", "C", True), ("3", "A", "D", False),
                    ("4", "A", "A", True), ("5", "B", "B", True)]
    _, rounds = catalog.query(home, "SELECT sample_id, rounds FROM trajectories ORDER BY sample_id")
    assert rounds == [(f"demo_bench:{i}", 2 if i % 4 == 0 else 1) for i in range(6)]  # 0 and 4 fail once, retry
    _, errors = catalog.named(home, "exec_errors")
    assert [(r[0], r[1], r[2]) for r in errors] == [("error", "NameError", 2)]
    report = evaluate.report_markdown(home, shards[0].run_id)
    assert "| demo_bench | (all) | 6 | 4 | 66.67 |" in report


@pytest.mark.parametrize("module", ["answers", "ledger", "codec", "prompt", "records", "backends.scripted"])
def test_doctests(module):
    mod = importlib.import_module(f"thyme_core.agent.{module}")
    assert doctest.testmod(mod).failed == 0


def test_bench_tsv_doctests():
    assert doctest.testmod(benchmarks).failed == 0
