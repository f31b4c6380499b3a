"""Benchmarks as VLMEvalKit ships them and its scoring protocol (eval/vlmevalkit.py).

Checked: MME-RealWorld-Lite's `multi-choice options` column is parsed and shown as VLMEvalKit shows it;
`cycle_category` and `l2-category` reach eval_results; eval_accuracy reports HRBench's per-cycle averages and
MME-RealWorld's pooled Perception / Reasoning rows (expected values computed here from the rows' outcomes);
VLMEvalKit's rule stage (can_infer, extract_characters_regex) against literal cases; the protocol shows in the
run id and eval_runs; a trajectory without an answer is retried under its own sample id.
"""

import base64
import doctest
import io
import json
import re

import pytest
from PIL import Image

from thyme_core import catalog
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.eval import benchmarks, evaluate, vlmevalkit
from thyme_core.eval.benchmarks import BenchRow
from thyme_core.viewer import db
from thyme_core.viewer.links import LiveLinks
from thyme_core.viewer.pages import Pages

CONFIG = AgentConfig(isolation="none", max_rounds=1)


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _run(home, tsv, responses: dict, scoring=evaluate.EvalScoring(), tmp=None):
    path = tsv.parent / f"{tsv.stem}-responses.jsonl"
    path.write_text("\n".join(json.dumps({"sample_id": k, "response": v}) for k, v in responses.items()) + "\n")
    spec = BackendSpec("scripted", response_file=str(path))
    shards = evaluate.plan(tsv, spec, CONFIG, shard_rows=50, scoring=scoring)
    for s in shards:
        evaluate.eval_shard(s, home, spec, CONFIG, scoring)
    return shards[0].run_id


def test_multi_choice_options_column_is_parsed_and_prompted_as_vlmevalkit_does(tmp_path):
    row = BenchRow("7", "How many cars are in the lot?", {"A": "12", "B": "15", "C": "20", "D": "8", "E": "3"},
                   "B", "Perception/Monitoring", image_b64=_png(), l2_category="counting/vehicle")
    benchmarks.write_tsv(tmp_path / "MME-RealWorld-Lite.tsv", [row], multi_choice=True)
    header = (tmp_path / "MME-RealWorld-Lite.tsv").read_text().splitlines()[0].split("\t")
    assert "multi-choice options" in header and "A" not in header  # the shipped layout: no A-E columns
    got = benchmarks.read_rows(tmp_path / "MME-RealWorld-Lite.tsv", 0, 1)[0]
    assert got.options == row.options and got.l2_category == "counting/vehicle"
    prompt = got.prompt()
    assert prompt.startswith("How many cars are in the lot? The choices are listed below:\n(A) 12\n(B) 15\n")
    assert prompt.endswith("(E) 3\n" + benchmarks.MME_REALWORLD_INSTRUCTION)


@pytest.mark.parametrize("answer, expected", [
    ("B", "B"), ("(B) 15", "B"), ("The answer is C.", "C"),
    ("A dog sits there", "A"),  # VLMEvalKit reads the article as option A (ours does not)
    ("B or D", None),  # two letters: nothing inferred, the judge would be asked
    ("b", None),  # no lower-case letters in its rules
    ("so 15", "B"),  # option text contained (once)
    ("it is fifteen, so 15", None),  # longer than twice all option texts: text matching is not tried
    ("Cannot determine the answer", "Z"),  # a refusal
    ("Z", "Z"),
])
def test_can_infer(answer, expected):
    assert vlmevalkit.can_infer(answer, {"A": "12", "B": "15", "C": "20", "D": "8"}) == expected


@pytest.mark.parametrize("prediction, expected", [
    ("(C)", "C"), ("The best answer is D", "D"), ("\\boxed{B}", "B"),
    ("the answer is (b)", ""),  # prefixes are case-sensitive, no capital A-E, and the text is in no "(X)"
    ("Dog", "D"),  # the first capital A-E anywhere: the D of "Dog"
    ("", "A"),  # an empty prediction is read as option A ("" is in every "(X)"), as published
    ("the animal on the left of the picture is most likely to be a small brown dog", ""),  # > 10 words, no A-E
])
def test_extract_characters_regex(prediction, expected):
    assert vlmevalkit.extract_characters_regex(prediction) == expected


def test_vlmevalkit_doctests():
    assert doctest.testmod(vlmevalkit).failed == 0


def test_hrbench_cycle_averages_and_protocol_in_run(tmp_path, home):
    # 2 cycles x (single, cross): cycle 1 gets 2/2 single, 1/2 cross; cycle 2 gets 1/2 single, 0/2 cross
    outcome = {("1", "single"): [True, True], ("1", "cross"): [True, False],
               ("2", "single"): [True, False], ("2", "cross"): [False, False]}
    rows, responses, img = [], {}, _png()
    for (cycle, cat), hits in outcome.items():
        for hit in hits:
            i = str(len(rows))
            rows.append(BenchRow(i, "Which colour?", {"A": "red", "B": "blue"}, "B", cat, image_b64=img,
                                 cycle_category=f"cycle{cycle}"))
            responses[f"HRBench4K:{i}"] = f"<think>look</think><answer>{'B' if hit else 'A'}</answer>"
    benchmarks.write_tsv(tmp_path / "HRBench4K.tsv", rows)
    run = _run(home, tmp_path / "HRBench4K.tsv", responses)
    cols, got = catalog.named(home, "eval_accuracy")
    table = {r[cols.index("category")]: r[cols.index("accuracy_pct")] for r in got if r[0] == run}

    def pct(xs):
        return sum(xs) / len(xs)
    for kind in ("single", "cross"):
        per_cycle = [pct(outcome[(c, kind)]) for c in ("1", "2")]
        assert table[f"cycle average: {kind}"] == round(100 * pct(per_cycle), 2)
    per_cycle_all = [pct(outcome[(c, "single")] + outcome[(c, "cross")]) for c in ("1", "2")]
    assert table["cycle average: all"] == round(100 * pct(per_cycle_all), 2)
    # the viewer's eval page shows the same headline rows after the benchmark's rows by category
    html = Pages(db.Catalog(home), LiveLinks()).eval_run(run)
    shown = re.findall(r'<tr class="headline protocol"><td>HRBench4K</td><td>([^<]+)</td>\s*<td>\d+</td><td>\d+</td>'
                       r'<td></td><td>([\d.]+)</td>', html)
    assert {c: float(v) for c, v in shown} == {c: table[c] for c in table if c.startswith("cycle average")}
    assert html.index("cycle average: all") > html.index(">single</a>")
    _, runs = catalog.query(home, "SELECT run_id, protocol, samples FROM (" +
                            catalog.sql_text("queries/eval_runs").rstrip().rstrip(";") + ")")
    assert runs == [(run, "thyme", 8)] and run.startswith("eval-") and "vlmevalkit" not in run


def test_mme_realworld_pooled_rows_regex_scoring_and_retry(tmp_path, home):
    img, rows, responses = _png(), [], {}
    # (category, prediction) ; answer always "C"
    plan = [("Perception/OCR", "C"), ("Perception/OCR", "The best answer is C"), ("Perception/Monitoring", "A"),
            ("Reasoning/Diagram", "C"), ("Reasoning/Diagram", "c, the third"),  # regex: no capital A-E: ""
            ("Reasoning/Monitoring", None)]  # no answer at first; the retry answers C
    for i, (cat, pred) in enumerate(plan):
        rows.append(BenchRow(str(i), "Q?", {k: f"opt {k}" for k in "ABCDE"}, "C", cat, image_b64=img,
                             l2_category="l2"))
        responses[f"MME-RealWorld-Lite:{i}"] = "<think>hm</think>" + (f"<answer>{pred}</answer>" if pred else "")
    responses["MME-RealWorld-Lite:5~retry1"] = "<think>again</think><answer>(C)</answer>"
    benchmarks.write_tsv(tmp_path / "MME-RealWorld-Lite.tsv", rows, multi_choice=True)
    scoring = evaluate.EvalScoring(protocol="vlmevalkit", retries=2)
    run = _run(home, tmp_path / "MME-RealWorld-Lite.tsv", responses, scoring)
    assert run.startswith("eval-vlmevalkit-")
    _, got = catalog.query(home, "SELECT index, choice, matched_by, correct, attempts, sample_id FROM eval_results "
                                 "ORDER BY index::INT")
    expected_choice = ["C", "C", "A", "C", "", "C"]  # the last one scored on its retry
    assert [r[1] for r in got] == expected_choice and {r[2] for r in got} == {"regex"}
    assert got[5][4:] == (2, "MME-RealWorld-Lite:5~retry1") and all(r[4] == 1 for r in got[:5])
    hits = [c == "C" for c in expected_choice]
    cols, acc = catalog.named(home, "eval_accuracy")
    table = {r[cols.index("category")]: (r[cols.index("samples")], r[cols.index("correct")]) for r in acc}
    assert table["Perception (pooled)"] == (3, sum(hits[:3]))
    assert table["Reasoning (pooled)"] == (3, sum(hits[3:]))
    html = Pages(db.Catalog(home), LiveLinks()).eval_run(run)
    assert re.search(r'<td>Perception \(pooled\)</td>\s*<td>3</td><td>%d</td>' % sum(hits[:3]), html)
    _, runs = catalog.query(home, "SELECT protocol, retried FROM (" +
                            catalog.sql_text("queries/eval_runs").rstrip().rstrip(";") + ")")
    assert runs == [("vlmevalkit", 1)]


def test_exact_matching_without_judge_gives_z_and_thyme_protocol_reads_plain_meaning(tmp_path, home):
    img = _png()
    rows = [BenchRow("0", "What is it?", {"A": "cat", "B": "dog"}, "B", "x", image_b64=img),
            BenchRow("1", "What is it?", {"A": "cat", "B": "dog"}, "B", "x", image_b64=img)]
    responses = {"V:0": "<answer>It is clearly B or maybe a dog</answer>", "V:1": "<answer>the answer is b</answer>"}
    benchmarks.write_tsv(tmp_path / "V.tsv", rows)
    ours = _run(home, tmp_path / "V.tsv", responses)
    theirs = _run(home, tmp_path / "V.tsv", responses, evaluate.EvalScoring(protocol="vlmevalkit"))
    assert ours != theirs
    _, got = catalog.query(home, "SELECT run_id, index, choice, matched_by FROM eval_results ORDER BY 1, 2")
    by_run = {(r[0], r[1]): (r[2], r[3]) for r in got}
    assert by_run[(ours, "1")] == ("B", "thyme")
    # VLMEvalKit: "b" is no letter for its rules and no option text: with no judge, Z (exact-matching mode)
    assert by_run[(theirs, "1")] == ("Z", "no_judge")
    assert by_run[(theirs, "0")] == ("B", "rule")  # one capital letter token
