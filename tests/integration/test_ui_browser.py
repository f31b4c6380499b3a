"""The Prefect UI in a real browser (headless Chromium driven by playwright) against the session's server and a
`thyme serve` worker: a custom run through a deployment's form ends with its summary on the artifact page; a
failing run shows its error line first, without a traceback. One browser for the module; pages are closed
after each check (headless Chromium's software rendering keeps a core busy while a page is open)."""

from __future__ import annotations

import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import deployment_id, thyme
from thyme_core.base.names import artifact_key
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000  # a page of the UI takes seconds to build on a busy 2-core machine

pytestmark = pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                                reason="no chromium (Debian package `chromium`, see infra/setup-system.sh)")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    page.close()


def ui(server: str) -> str:
    return server.removesuffix("/api")


def flow_runs(server: str, deployment: str) -> dict[str, object]:
    """{flow run id: run} of a deployment (Prefect's sync client: playwright's sync API holds an event loop)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server}):
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id(server, deployment)])))
    return {str(r.id): r for r in runs}


def custom_run(page, server: str, deployment: str, fields: dict[str, str]) -> str:
    """Open the deployment, Run > Custom run, fill the form's fields, submit; returns the new flow run's id."""
    before = set(flow_runs(server, deployment))
    page.goto(f"{ui(server)}/deployments/deployment/{deployment_id(server, deployment)}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.wait_for_url("**/run**")
    boxes = {}
    for name, value in fields.items():  # each parameter: its label (the name), its description, its input
        label = page.locator(".schema-form-property__label", has_text=re.compile(f"^{re.escape(name)}$"))
        boxes[name] = page.locator(".schema-form-property").filter(has=label).first.locator("textarea")
        boxes[name].fill(value)
    for _ in range(5):  # the form may still be applying its defaults on a busy machine: what it keeps is sent
        page.wait_for_timeout(500)
        lost = {name: value for name, value in fields.items() if boxes[name].input_value() != value}
        if not lost:
            break
        for name, value in lost.items():
            boxes[name].fill(value)
    page.get_by_role("button", name="Submit").click()
    try:
        page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]{36}(\?.*)?$"))  # back, with a toast
    except playwright.TimeoutError:
        raise AssertionError(f"the form was not accepted; the page says:\n{page.inner_text('body')[:3000]}") from None
    (new,) = set(flow_runs(server, deployment)) - before
    assert flow_runs(server, deployment)[new].parameters.items() >= fields.items()  # what the form sent
    return new


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser-src") / "two.parquet"
    rows = list(generate_records("2round", 6, 5, 256, 192, 1))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=3)
    return path


def artifact_id(server: str, key: str, flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server}):
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return str(artifact.id)


def test_custom_run_from_the_form_then_its_summary_and_a_failing_run(deployed, prefect_server, source, page):
    home, env, _ = deployed
    deployment = "prepare_sft_data/prepare-sft-data"
    split = "tworound.v2"  # a dot: the artifact key is derived, the run must not fail at its last step
    good = custom_run(page, prefect_server, deployment, {"source": str(source), "split": split})
    missing = source.parent / "missing.parquet"
    bad = custom_run(page, prefect_server, deployment, {"source": str(missing), "split": "x"})
    thyme("serve", "--pool", "cpu", "--run-once", "--home", home, env=env, timeout=600)
    runs = flow_runs(prefect_server, deployment)
    assert runs[good].state_type.value == "COMPLETED" and runs[bad].state_type.value == "FAILED"

    # the run page lists the progress artifact with its percentage
    page.goto(f"{ui(prefect_server)}/runs/flow-run/{good}")
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(f"prepare {split}: 100% (2/2 shards)").wait_for()
    # the summary artifact renders the markdown
    page.goto(f"{ui(prefect_server)}/artifacts/artifact/{artifact_id(prefect_server, artifact_key('prepare', split), good)}")
    page.get_by_text("This run").first.wait_for()
    assert "shards: 2 processed, 0 already done" in page.inner_text("body")

    # the failing run's logs: the error line, and no traceback
    page.goto(f"{ui(prefect_server)}/runs/flow-run/{bad}")
    page.get_by_text(f"error: {missing}: no such file or folder").first.wait_for()
    assert "Traceback" not in page.inner_text("body")
