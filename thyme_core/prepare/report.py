"""The end-of-run summary of `thyme prepare`: what this run did, and what the catalog now holds.

Printed by the CLI and published as a Prefect markdown artifact by the flow; plain data plus a markdown
rendering, so a notebook user gets the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.prepare.shards import ShardResult


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

    def markdown(self) -> str:
        lines = [
            f"## prepare_sft_data: split `{self.split}`",
            "",
            f"- shards: {self.shards_run} processed, {self.shards_reused} already done (skipped)",
            f"- samples: {self.samples_image} with image, {self.samples_text} text-only, {self.samples_rl} RL; "
            f"{self.rejects} rejected",
            f"- images: {self.images_seen} seen, {self.images_written} newly stored, "
            f"{self.images_seen - self.images_written} deduplicated, {self.images_repaired} repaired",
            f"- wall time {self.wall_seconds:.1f} s, {self.images_per_second:.0f} images/s",
            "",
            "### Catalog: samples by split",
            "",
            "| split | image samples | text samples | code blocks | images |",
            "|---|---:|---:|---:|---:|",
            *[f"| {' | '.join(str(v) for v in row)} |" for row in self.by_split],
            "",
            "### Catalog: RL samples by split",
            "",
            "| split | RL samples | with image | images | distinct solutions |",
            "|---|---:|---:|---:|---:|",
            *[f"| {' | '.join(str(v) for v in row)} |" for row in self.rl_by_split],
            "",
            "### Catalog: rejects by reason",
            "",
            "| split | reason | records |",
            "|---|---|---:|",
            *[f"| {' | '.join(str(v) for v in row)} |" for row in self.rejects_by_reason],
        ]
        if not self.rejects_by_reason:
            lines.append("| (none) | | 0 |")
        return "\n".join(lines)


def build_report(home: DataHome, split: str, results: list[ShardResult], wall_seconds: float) -> PrepareReport:
    ran = [r.summary for r in results if not r.reused]
    _, by_split = catalog.named(home, "counts_by_split")
    _, rl_by_split = catalog.named(home, "rl_counts")
    _, reasons = catalog.query(
        home, "SELECT split, reason, count(*) FROM rejects GROUP BY ALL ORDER BY split, count(*) DESC"
    )
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
