"""The viewer's pages: catalog rows and run folders in, HTML out (Jinja2 templates with autoescaping on).

Every string the model or the sandbox wrote (question, reasoning, code, stdout, errors, answers) reaches the page
only through a template's autoescaping or Pygments' escaping HTML formatter; the only markup passed through as
is, is what this package makes (highlighted code, SVG charts). Links come from a links object (live or export),
images only by stored path (images.safe_path), crop regions from the pixels (crops.locate, cached by image pair).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from thyme_core.runs import plans
from thyme_core.viewer import charts, crops, images, runs
from thyme_core.viewer.db import Catalog

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_ROWS = 200
OUTCOMES = ("correct", "wrong", "no_answer")
FILTER_KEYS = ("outcome", "stop_reason", "error_type", "q")
SFT_CURVES = [("loss", ["loss"]), ("learning rate", ["lr"]), ("grad norm", ["grad_norm"]),
              ("tokens/s", ["tokens_per_s"]), ("padding share", ["padding"])]
RL_METRIC_CURVES = [("KL (k3, mean per token)", ["kl_mean"]), ("clip fraction", ["clip_fraction"]),
                    ("grad norm", ["grad_norm"]), ("rollouts/s", ["rollouts_per_s"]),
                    ("engine wait share", ["engine_wait_share"])]
RL_CATALOG_CURVES = [("reward mean and spread (std)", ["reward_mean", "reward_std"]),
                     ("reward parts (means)", ["format_mean", "accuracy_mean", "consistency_mean"]),
                     ("code use and code success", ["code_rate", "code_success_rate"]),
                     ("zero-variance groups", ["zero_variance_groups"]), ("kept rollouts", ["kept", "limited"])]
_CODE_OPEN = re.compile(r"<code>", re.I)

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_formatter = HtmlFormatter(nowrap=True)


def code_html(code: str) -> Markup:
    """Python highlighted by Pygments (its formatter escapes every token)."""
    return Markup(highlight(code or "", PythonLexer(), _formatter))


def pygments_css() -> str:
    return HtmlFormatter().get_style_defs(".code")


def reasoning_of(text: str) -> str:
    """The model's text of a round before its code block."""
    m = _CODE_OPEN.search(text or "")
    return (text[: m.start()] if m else text or "").strip()


@functools.lru_cache(maxsize=4)
def _input_gray(source: str):
    """A trajectory's input image, decoded once for all of its fed-back images."""
    return images.load_gray(Path(source))


@functools.lru_cache(maxsize=4096)
def _region(source: str, returned: str) -> crops.Region | None:
    try:
        return crops.locate(_input_gray(source), images.load_gray(Path(returned)))
    except (OSError, ValueError):
        return None


def warm_up() -> None:
    """Pay a process's one-time costs before its first page is asked for: every template compiled, Pygments'
    lexer and formatter loaded, OpenCV imported and its decoder and matcher run once on a small picture."""
    import cv2

    for name in _env.list_templates():
        _env.get_template(name)
    code_html("x = [1]\nprint(x)")
    pygments_css()
    picture = np.random.default_rng(0).integers(0, 255, (96, 128), dtype=np.uint8)
    ok, png = cv2.imencode(".png", picture)
    if ok:
        decoded = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
        crops.locate(decoded, cv2.resize(decoded[20:68, 30:94], (128, 96)))


class NotFound(Exception):
    """A page asked for something the home does not hold (the message names it)."""


class Pages:
    def __init__(self, catalog: Catalog, links):
        self.db, self.links, self.home = catalog, links, catalog.home
        self._filters: dict = {}

    def render(self, template: str, title: str, **ctx) -> str:
        return _env.get_template(template).render(title=title, links=self.links, **ctx)

    def message(self, text: str) -> str:
        return self.render("message.html", "not found", message=text)

    def not_found(self, what: str):
        raise NotFound(f"Nothing here: {what}")

    def warm(self) -> None:
        """What the live server runs at start, so its first page costs what later ones do: warm_up(), and the
        runs page and a trajectory lookup (the views bound, the parts' footers in DuckDB's cache)."""
        warm_up()
        self.runs()
        self.db.query("trajectory_rounds", run_id="", sample_id="")

    # ---- runs

    def runs(self) -> str:
        agent = self.db.query("agent_runs")
        prepare = self.db.query("prepare_runs")
        replay = self.db.query("replay_summary")
        train = runs.train_runs(self.home)
        stage = plans.stage_runs(self.home)
        status = {r.key: r for r in stage if r.kind == "eval"}
        for a in agent:
            found = status.get(a["run_id"])
            a["status"] = f"{found.status} ({found.published}/{found.planned} shards)" if found else ""
        return self.render("runs.html", "runs", agent=agent, prepare=prepare, replay=replay, stage=stage,
                           eval_ids={a["run_id"] for a in agent if a["kind"] == "eval"},
                           as_json=lambda v: json.dumps(v, indent=1, sort_keys=True),
                           sft=[r for r in train if r.kind == "sft"], rl=[r for r in train if r.kind == "rl"],
                           home=str(self.home.root))

    # ---- evaluation

    def filter_values(self, run_id: str) -> list[dict]:
        """Stop reasons and error types of a run, kept until the catalog's shard folders change."""
        key = (run_id, self.db.version)
        if key not in self._filters:
            values = self.db.query("eval_filter_values", run_id=run_id)
            self._filters = {(run_id, self.db.version): values}
            return values
        return self._filters[key]

    def eval_run(self, run_id: str) -> str:
        rows = self.db.query("eval_run_accuracy", run_id=run_id)
        if not rows:
            self.not_found(f"evaluation run {run_id!r}")
        rows = _with_headline(rows, self.db.query("eval_run_headline", run_id=run_id))
        values = self.filter_values(run_id)
        return self.render("eval.html", f"eval {run_id}", run_id=run_id, rows=rows,
                           stops=[v for v in values if v["kind"] == "stop_reason"],
                           errors=[v for v in values if v["kind"] == "error_type"])

    def samples(self, run_id: str, benchmark: str, category: str, filters: dict, offset: int = 0,
                limit: int = PAGE_ROWS) -> str:
        f = {k: str(filters.get(k) or "") for k in FILTER_KEYS}
        if f["outcome"] not in ("", *OUTCOMES):
            f["outcome"] = ""
        rows = self.db.query("eval_samples", run_id=run_id, benchmark=benchmark or "", category=category or "",
                             outcome=f["outcome"], stop_reason=f["stop_reason"], search=f["q"],
                             error_type=f["error_type"], limit=limit + 1, offset=max(0, offset))
        more, rows = len(rows) > limit, rows[:limit]
        statuses = {s["sample_id"]: s for s in self.db.query(
            "sample_statuses", run_id=run_id, sample_ids=[r["sample_id"] for r in rows])} if rows else {}
        values = self.filter_values(run_id)
        for r in rows:
            r["outcome"] = "correct" if r["correct"] else ("no_answer" if r["prediction"] == "" else "wrong")
            found = statuses.get(r["sample_id"], {})
            r["statuses"], r["error_types"] = found.get("statuses", ""), found.get("error_types", "")
        return self.render("samples.html", f"samples of {run_id}", run_id=run_id, benchmark=benchmark,
                           category=category, rows=rows, filters=f, offset=offset, limit=limit, more=more,
                           stops=[v["value"] for v in values if v["kind"] == "stop_reason"],
                           errors=[v["value"] for v in values if v["kind"] == "error_type"], outcomes=OUTCOMES)

    # ---- one trajectory

    def trajectory(self, run_id: str, sample_id: str) -> str:
        found = self.db.query("trajectory", run_id=run_id, sample_id=sample_id)
        if not found:
            self.not_found(f"trajectory {sample_id!r} of run {run_id!r}")
        t = found[0]
        paths = dict(zip(t["image_sha256"] or [], t["image_paths"] or []))
        input_rel = (t["image_paths"] or [""])[0]
        input_file = images.resolve(self.home, input_rel)
        size = _size(input_file)
        rounds, boxes = [], []
        for r in self.db.query("trajectory_rounds", run_id=run_id, sample_id=sample_id):
            outs = []
            for sha in r["output_image_sha256"] or []:
                rel = paths.get(sha, "")
                out_file = images.resolve(self.home, rel)
                region = _region(str(input_file), str(out_file)) if input_file and out_file else None
                box = None
                if region and size:
                    box = {"n": len(boxes) + 1, "round": r["round"], "region": region,
                           "pct": [round(100 * v, 3) for v in region.as_fractions(*size)]}
                    boxes.append(box)
                outs.append({"rel": rel, "sha": sha, "box": box})
            r.update(reasoning=reasoning_of(r["text"]), code_markup=code_html(r["code"]) if r["code"] else "",
                     outputs=outs)
            rounds.append(r)
        is_rl = t.get("step") is not None
        outcome = ("no reference" if t["correct"] is None else "correct" if t["correct"] else "wrong")
        return self.render("trajectory.html", f"trajectory {sample_id}", t=t, rounds=rounds, boxes=boxes,
                           input_rel=input_rel, size=size, outcome=outcome, is_rl=is_rl,
                           rl_key=run_id.removeprefix("rl-"))

    # ---- training runs

    def rl_run(self, key: str) -> str:
        run = runs.find_train_run(self.home, "rl", key)
        if run is None:
            self.not_found(f"RL run {key!r}")
        metrics = runs.read_metrics(run.run_dir, "reward_mean")
        curves = self.db.query("rl_curves", run=f"rl-{key}")
        return self.render("rl_run.html", f"RL run {key}", run=run, curves=curves, metrics=metrics,
                           catalog_charts=[Markup(c) for c in charts.charts(RL_CATALOG_CURVES, curves)],
                           metric_charts=[Markup(c) for c in charts.charts(RL_METRIC_CURVES, metrics)])

    def rl_step(self, key: str, step: int) -> str:
        rows = self.db.query("rl_step_rollouts", run=f"rl-{key}", step=int(step))
        if not rows:
            self.not_found(f"step {step} of RL run {key!r}")
        groups: dict[int, list[dict]] = {}
        for r in rows:
            groups.setdefault(r["group"], []).append(r)
        return self.render("rl_step.html", f"RL run {key} step {step}", key=key, step=int(step),
                           groups=sorted(groups.items()), run_id=f"rl-{key}")

    def sft_run(self, stage: int, key: str) -> str:
        run = runs.find_train_run(self.home, "sft", key, int(stage))
        if run is None:
            self.not_found(f"SFT stage {stage} run {key!r}")
        metrics = runs.read_metrics(run.run_dir, "loss")
        return self.render("sft.html", f"SFT stage {stage} run {key}", run=run, metrics=metrics,
                           charts=[Markup(c) for c in charts.charts(SFT_CURVES, metrics)],
                           config=json.dumps(run.config, indent=1, sort_keys=True))


def _with_headline(rows: list[dict], headline: list[dict]) -> list[dict]:
    """Each benchmark's rows by category, then its headline rows (HRBench's cycle averages, MME-RealWorld's pooled
    tasks), marked `protocol` (they aggregate other rows: no samples page of their own)."""
    by_bench: dict[str, list[dict]] = {}
    for r in headline:
        by_bench.setdefault(r["benchmark"], []).append({**r, "no_answer": None, "protocol": True})
    out = []
    for i, r in enumerate(rows):
        out.append({**r, "protocol": False})
        if i + 1 == len(rows) or rows[i + 1]["benchmark"] != r["benchmark"]:
            out += by_bench.pop(r["benchmark"], [])
    return out


def _size(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError:
        return None
