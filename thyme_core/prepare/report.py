"""The end-of-run summary of `thyme prepare`: what this run did, this split in the catalog, the home's totals.

Printed by the CLI and published as a Prefect markdown artifact by the flow; plain data plus a markdown
rendering, so a notebook user gets the same figures. The flow's log gets `headline()` (one line) and one
`describe_shard` line per shard, not the markdown. Sections with no rows say "none" rather than showing an
empty table.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.prepare.shards import ShardResult

SPLIT_COLUMNS = ("image samples", "text samples", "code blocks", "images")  # counts_by_split after `split`
RL_COLUMNS = ("RL samples", "with image", "images", "distinct solutions")  # rl_counts after `split`


@dataclass(frozen=True)
class PrepareReport:
    split: str
    shards_run: int
    shards_reused: int
    samples_image: int
    samples_text: int
    samples_rl: int  # RL prompts (files in the released RL form)
    rejects: int
    images_seen: int
    images_written: int
    images_repaired: int
    wall_seconds: float
    by_split: tuple[tuple, ...]  # catalog-wide: (split, image samples, text samples, code blocks, images)
    rl_by_split: tuple[tuple, ...]  # catalog-wide: the rl_counts query
    rejects_by_reason: tuple[tuple, ...]  # catalog-wide: (split, reason, records)

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def headline(self) -> str:
        return (f"prepare {self.split}: {self.shards_run} shards processed, {self.shards_reused} already done; "
                f"{self.samples_image + self.samples_text + self.samples_rl} samples, {self.rejects} rejects, "
                f"{self.images_seen} images in {self.wall_seconds:.1f} s ({self.images_per_second:.0f} images/s)")

    def markdown(self) -> str:
        this_rl = [r for r in self.rl_by_split if r[0] == self.split]
        lines = [
            f"## prepare_sft_data: split `{self.split}`",
            "",
            "### This run",
            "",
            f"- shards: {self.shards_run} processed, {self.shards_reused} already done (reused from an earlier run)",
            f"- samples: {self.samples_image} with image, {self.samples_text} text-only, {self.samples_rl} RL; "
            f"{self.rejects} rejected",
            f"- images: {self.images_seen} seen, {self.images_written} newly stored, "
            f"{self.images_seen - self.images_written} deduplicated, {self.images_repaired} repaired",
            f"- wall time {self.wall_seconds:.1f} s, {self.images_per_second:.0f} images/s",
            "",
            f"### Split `{self.split}` in the catalog (all runs)",
            "",
            *_table(("split", *SPLIT_COLUMNS), [r for r in self.by_split if r[0] == self.split]),
            *(_table(("split", *RL_COLUMNS), this_rl) if this_rl else []),
            f"Rejects of `{self.split}` by reason:",
            "",
            *_table(("reason", "records"), [r[1:] for r in self.rejects_by_reason if r[0] == self.split]),
            "### The data home's totals",
            "",
            *_table(("splits", *SPLIT_COLUMNS), _totals(self.by_split)),
            *(_table(("RL splits", *RL_COLUMNS), _totals(self.rl_by_split)) if self.rl_by_split else []),
            f"- rejects: {sum(r[2] for r in self.rejects_by_reason)} in all splits",
        ]
        return "\n".join(lines)


def _table(columns: tuple[str, ...], rows: list[tuple]) -> list[str]:
    if not rows:
        return ["none", ""]
    return ["| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|",
            *["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in rows], ""]


def _totals(rows: tuple[tuple, ...]) -> list[tuple]:
    """(number of splits, column sums): one row, or none for an empty catalog."""
    if not rows:
        return []
    return [(len(rows), *(sum(r[i] or 0 for r in rows) for i in range(1, len(rows[0]))))]


def describe_shard(result: ShardResult) -> str:
    """One log line per shard: what it held and how fast it went."""
    s, run = result.summary, result.run
    where = f"{s.source_file} rows {s.row_start}-{s.row_stop}"
    if result.reused or run is None:
        return f"{where}: already done by an earlier run (reused)"
    rate = s.images_seen / run.seconds if run.seconds > 0 else 0.0
    return (f"{where}: {s.samples_image + s.samples_text + s.samples_rl} samples, {s.rejects} rejects, "
            f"{s.images_seen} images ({run.images_written} new) in {run.seconds:.1f} s, {rate:.0f} images/s")


def build_report(where: "DataHome | catalog.Query", split: str, results: list[ShardResult],
                 wall_seconds: float) -> PrepareReport:
    """The report of a run; its catalog-wide sections from `where`: a home, or a published version queried in
    place (a cluster run whose driver home was left as it was)."""
    query = catalog.querier(where)
    ran = [r.summary for r in results if not r.reused]
    _, by_split = query(catalog.sql_text("queries/counts_by_split"))
    _, rl_by_split = query(catalog.sql_text("queries/rl_counts"))
    _, reasons = query("SELECT split, reason, count(*) FROM rejects GROUP BY ALL ORDER BY split, count(*) DESC")
    return PrepareReport(
        split=split,
        shards_run=len(ran),
        shards_reused=len(results) - len(ran),
        samples_image=sum(s.samples_image for s in ran),
        samples_text=sum(s.samples_text for s in ran),
        samples_rl=sum(s.samples_rl for s in ran),
        rejects=sum(s.rejects for s in ran),
        images_seen=sum(s.images_seen for s in ran),
        images_written=sum(r.run.images_written for r in results if r.run is not None),
        images_repaired=sum(s.images_repaired for s in ran),
        wall_seconds=wall_seconds,
        by_split=tuple(by_split),
        rl_by_split=tuple(rl_by_split),
        rejects_by_reason=tuple(reasons),
    )
