"""One frozen dataclass per record kind, and the Arrow schema derived from it.

These are the rows of the Parquet files; `sql/schema.sql` declares the catalog views over them with the
same columns, and a test checks that the two agree. Adding a field means adding it in both places.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

import pyarrow as pa

_ARROW_TYPES = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    float | None: pa.float64(),
    bool: pa.bool_(),
    list[str]: pa.list_(pa.string()),
}


@dataclass(frozen=True)
class SftSample:
    """A prepared SFT sample. Paths in `question` / `response` are relative to the data home."""

    id: str  # sha256 (32 hex) of split, original text and image hashes: the dedup key
    split: str
    source_file: str
    source_row: int
    question: str
    response: str
    question_orig: str
    response_orig: str
    image_sha256: list[str]  # image[0] the original, then processed images in order
    image_paths: list[str]  # home-relative paths of the same images
    has_image: bool
    n_images: int
    n_code_blocks: int
    path_map: str  # JSON list of {where, block, original, image_index, stored}
    shard: str


@dataclass(frozen=True)
class RlSample:
    """A prepared RL prompt (the released form: messages, images, solution, question). Paths home-relative."""

    id: str  # sha256 (32 hex) of split, question, solution and image hashes: the dedup key
    split: str
    source_file: str
    source_row: int
    question: str
    prompt: str  # JSON list of {role, content}; `User Image Path` lines name the stored image[0]
    solution: str
    image_sha256: list[str]
    image_paths: list[str]  # home-relative paths of the same images
    has_image: bool
    shard: str


@dataclass(frozen=True)
class ImageRecord:
    sha256: str
    path: str  # relative to the data home
    format: str  # stored format: JPEG or PNG
    width: int
    height: int
    bytes: int
    repair: str  # reasons.Repair value; "" when stored byte-for-byte
    source_format: str


@dataclass(frozen=True)
class RejectRecord:
    split: str
    source_file: str
    source_row: int
    reason: str  # reasons.Reject value
    detail: str
    shard: str


@dataclass(frozen=True)
class ShardSummary:
    """One row per finished prepare shard: what went in and what came out."""

    shard: str
    split: str
    source_file: str
    row_start: int
    row_stop: int
    samples_image: int
    samples_text: int
    samples_rl: int
    rejects: int
    images_seen: int
    images_repaired: int
    code_version: str


@dataclass(frozen=True)
class ShardRun:
    """Facts of the run that made a prepare shard, not of its content: kept beside it (summary.run.parquet),
    out of dataset versions, so the same content always gives the same version hash."""

    shard: str
    images_written: int  # new to this home's image store (a rerun after a kill finds some already stored)
    seconds: float
    host: str


@dataclass(frozen=True)
class ReplayRun:
    """Facts of the run that replayed a shard (replays.run.parquet beside replays.parquet), out of versions
    like ShardRun: what a scale plan needs (seconds per code block on this machine), never version content."""

    shard: str  # the replay shard's key (its folder)
    prepare_shard: str
    samples: int
    blocks: int
    seconds: float  # wall time of the whole shard, its samples `concurrency` at a time
    concurrency: int
    host: str


@dataclass(frozen=True)
class ReplayRecord:
    """One code block of a prepared sample, re-executed in the sandbox and compared with its recorded output."""

    sample_id: str
    split: str
    block: int
    status: str  # match / mismatch / failed
    similarity: float | None  # pixel similarity for image outputs; NULL for text
    reason: str  # "" on match; sandbox status (error, timeout...) or size_differs / pixels_differ / text_differs...
    detail: str
    # No run time here (unlike ExecutionRecord): a replay's version content holds only what code and data
    # determine, so a replay on a cluster publishes the same version hash as a local one.



# ---- agent trajectories (infer, eval, RL rollouts) and evaluation results

_ARROW_TYPES.update({list[int]: pa.list_(pa.int64()), bool | None: pa.bool_()})


@dataclass(frozen=True)
class TrajectoryRecord:
    """One agent trajectory. Token fields are the compact ledger (one <|image_pad|> per image; see
    thyme_core/agent/ledger.py): mask 1 = model-generated, 0 = prompt and sandbox output."""

    run_id: str
    sample_id: str
    benchmark: str  # "" outside evaluation
    question: str
    image_sha256: list[str]  # the input image, then every fed-back image in order
    image_paths: list[str]  # home-relative paths of the same images
    response: str  # the assistant turn as text (fed-back images shown by stored path)
    answer: str  # extracted answer ("" when none)
    correct: bool | None  # NULL when there is no reference answer
    stop_reason: str  # answer / eos / round_limit / budget / length / image_limit
    rounds: int  # code executions
    prompt_tokens: int  # expanded counts (what the context held)
    generated_tokens: int
    sandbox_tokens: int
    image_tokens: int
    total_tokens: int
    token_ids: list[int]
    token_mask: list[int]
    image_offsets: list[int]  # index of each image's pad in token_ids
    image_grid_thw: list[int]  # 3 numbers per image
    generate_s: float
    sandbox_s: float
    total_s: float
    backend: str
    model: str
    config: str  # AgentConfig fingerprint


@dataclass(frozen=True)
class TurnRecord:
    run_id: str
    sample_id: str
    round: int
    text: str  # the model's text of this round
    code: str  # the code block it ended with ("" otherwise)
    generated_tokens: int
    finish: str  # code / answer / eos / length / budget


@dataclass(frozen=True)
class ExecutionRecord:
    """One sandbox run of a trajectory's code block."""

    run_id: str
    sample_id: str
    round: int
    status: str  # sandbox Status (ok, error, timeout, memory, killed, no_output, bad_output) or no_code
    error_type: str  # the exception type of an error ("" otherwise): the error taxonomy
    error: str
    stdout: str
    duration_s: float
    output_image_sha256: list[str]  # images fed back
    fed_back: str  # image / text / error / none (did not fit the token budget)
    feedback_tokens: int


@dataclass(frozen=True)
class EvalResult:
    run_id: str
    benchmark: str
    index: str
    category: str
    sample_id: str
    prediction: str  # the extracted answer
    choice: str  # the option letter it was matched to ("" when none)
    answer: str
    correct: bool
    stop_reason: str
    cycle_category: str  # HRBench: the cycle a row belongs to ("" elsewhere); accuracy averages over cycles
    l2_category: str  # MME-RealWorld's `l2-category` ("" elsewhere)
    protocol: str  # "thyme" (agent/answers.py) or "vlmevalkit" (eval/vlmevalkit.py)
    matched_by: str  # how `choice` was found: thyme / rule / judge / judge_failed / no_judge / regex / exact
    attempts: int  # trajectories run for this row (1 + retries of ones that ended without an answer)


def arrow_schema(cls: type) -> pa.Schema:
    hints = typing.get_type_hints(cls)
    return pa.schema([pa.field(f.name, _ARROW_TYPES[hints[f.name]]) for f in dataclasses.fields(cls)])


def to_table(cls: type, records: list) -> pa.Table:
    """Column-wise conversion of dataclass records to an Arrow table of `cls`'s schema."""
    names = [f.name for f in dataclasses.fields(cls)]
    columns = {n: [getattr(r, n) for r in records] for n in names}
    return pa.table(columns, schema=arrow_schema(cls))


# ---- RL rollouts (thyme train-rl): one row per rollout, next to its trajectory/turn/execution rows

@dataclass(frozen=True)
class RlRolloutRecord:
    """One GRPO-ATS rollout of a step. (run, sample_id) is its trajectory's (run_id, sample_id)."""

    run: str  # "rl-<run key>": the trajectories' run_id
    step: int  # optimizer step (1-based) whose rollouts these are
    group: int  # index of its group (its prompt) within the step
    member: int  # index within the group
    prompt_id: str
    sample_id: str  # "s<step>/<prompt_id>:<member>"
    reward: float | None  # the summed reward; NULL when missing (judge failure)
    reward_reason: str  # "" or the reason code of a missing reward
    # the reward's components (rl/rewards.py Scores.parts), NULL where not computed: format and accuracy by the
    # rewards that use them, consistency only where accuracy > 0 and w_cons > 0 (and NULL when its judge
    # failed). For the combined_negated control they are the un-negated components, while `reward` is negated.
    reward_format: float | None
    reward_accuracy: float | None
    reward_consistency: float | None
    advantage: float
    kept: bool  # carried loss (not dropped with its group, not masked for a limit)
    limit: str  # "" or the limit it hit: round_limit / budget / length / image_limit
