"""Publishing Prefect artifacts: keys derived safely from any name, retried runs told apart.

A key comes from thyme_core.base.names.artifact_key, so a split like `tworound.v2` cannot fail a run at its
last step. A flow run retried from the UI publishes under the same key (the key's history keeps both), so
every description carries the attempt number from the second attempt on: "... (attempt 2)".
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from thyme_core.base.names import artifact_key


def attempt() -> int:
    return max(1, flow_run.run_count or 1)


def describe(text: str) -> str:
    n = attempt()
    return text if n == 1 else f"{text} (attempt {n})"


def publish_markdown(markdown: str, key_parts: tuple[str, ...], description: str) -> str:
    create_markdown_artifact(markdown, key=artifact_key(*key_parts), description=describe(description))
    return markdown
