"""Computation samples (the `computation` split): text-only ones and ones about the scene's numbers.

Text-only samples have no image at all (`image` is an empty list, no `<image>` or path lines); image ones
read values off the scene (a price list, two numeric signs) and compute with them, in one round, or in
two where the first round zooms into the price list and the second computes. The value a round prints is
whatever the executed code printed; the last one is the answer.
"""

from __future__ import annotations

import numpy as np

from thyme_core.synth import compute, text
from thyme_core.synth.codegen import STYLES, image_code, pick
from thyme_core.synth.execute import Runner
from thyme_core.synth.samples import Ctx, Sample, finish, image_job, padded_box, steps_for, where

KIND = "computation"


def _with_options(rng: np.random.Generator, body: str, answer: str) -> tuple[str, str | None]:
    if rng.random() < 0.6:
        return body, None
    options, letter = text.options_block(rng, answer, compute.distractors(rng, answer))
    return f"{body}\n{options}", letter


def text_computation(rng: np.random.Generator, runner: Runner) -> Sample:
    rounds = 1 if rng.random() < 0.55 else 2
    problem = compute.text_problem(rng, rounds)
    parts, printed = [], ""
    for reasoning, code in problem.rounds:
        printed = runner.run(code).stdout
        parts += [reasoning, text.code_round(code, printed)]
    answer = printed.splitlines()[-1]
    body, letter = _with_options(rng, f"Question: {problem.question}", answer)
    unit = f" {problem.unit}" if problem.unit and letter is None else ""
    parts.append(f"The computed result is {answer}{unit}.")
    reply = text.response(parts, text.answer_text(rng, answer, letter))
    return Sample([], text.text_question(body), reply, KIND, f"text/{rounds}", answer)


def image_computation(ctx: Ctx) -> Sample:
    rng = ctx.rng
    signs = ctx.scene.of_kind("sign")
    if all(s.text.isdigit() for s in signs) and rng.random() < 0.4:
        values = [int(s.text) for s in signs]
        question, reasoning, code = compute.sign_sum_problem(values, [s.colour for s in signs])
        return _compute_round(ctx, question, reasoning, code, "signs/1")
    table = ctx.scene.first("table")
    question, reasoning, code = compute.price_problem(rng, table.prices)
    if rng.random() < 0.5:
        return _compute_round(ctx, question, reasoning, code, "prices/1")
    style = pick(rng, STYLES)
    box = padded_box(ctx, table.box, 0.05, 0.3)
    steps = steps_for(ctx, "zoom", style, table, box) or (("zoom", 2),)
    ctx.parts.append(text.intro(rng, "zoom", table, where(table)))
    ctx.run(image_code(image_job(ctx, box, steps, style=style, op="zoom"), rng))
    ctx.parts.append("\nNow the prices are legible. ")
    return _compute_round(ctx, question, reasoning, code, "prices/2")


def _compute_round(ctx: Ctx, question: str, reasoning: str, code: str, variant: str) -> Sample:
    ctx.parts.append(reasoning)
    answer = ctx.run(code).stdout.splitlines()[-1]
    body, letter = _with_options(ctx.rng, f"Question: {question}", answer)
    ctx.parts.append(f"The total is {answer}.")
    return finish(ctx, KIND, variant, body, answer, letter)
