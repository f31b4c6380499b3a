"""A retried flow run's artifacts tell the attempts apart: the same key, "(attempt 2)" in the second one's
description (tasks/artifacts.py), so a run page that lists both shows which is which."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration


def test_the_second_attempt_of_a_retried_run_says_so_in_its_artifact(prefect_server, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.artifacts import publish_markdown

    name = f"attempts-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "failed-once"

    @flow(name="thyme-test-attempts", retries=1, retry_delay_seconds=0)
    def report_then_fail_once():
        publish_markdown("# report", ("test", name), "a report")
        if not marker.exists():
            marker.touch()
            raise RuntimeError("the first attempt fails")

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        report_then_fail_once()
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=[f"test-{name}"])))
    assert sorted(a.description for a in artifacts) == ["a report", "a report (attempt 2)"]
