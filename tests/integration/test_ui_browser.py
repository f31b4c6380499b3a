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


def custom_run(page, server: str, deployment: str, fields: dict[str, str]) -> str:
    """Open the deployment, Run > Custom run, fill the form's fields, submit; returns the new flow run's id."""
    page.goto(f"{ui(server)}/deployments/deployment/{deployment_id(server, deployment)}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.wait_for_url("**/run**")
    for name, value in fields.items():
        field = page.get_by_label(name, exact=True)
        field.fill(value)
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]{36}.*"))
    return re.search(r"/flow-run/([0-9a-f-]{36})", page.url).group(1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser-src") / "two.parquet"
    rows = list(generate_records("2round", 6, 5, 256, 192, 1))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=3)
    return path


def test_custom_run_from_the_form_then_its_summary_and_a_failing_run(deployed, prefect_server, source, page):
    home, env, _ = deployed
    split = "tworound.v2"  # a dot: the artifact key is derived, the run must not fail at its last step
    good = custom_run(page, prefect_server, "prepare_sft_data/prepare-sft-data", {"source": str(source), "split": split})
    bad = custom_run(page, prefect_server, "prepare_sft_data/prepare-sft-data",
                     {"source": str(source.parent / "missing.parquet"), "split": "x"})
    thyme("serve", "--pool", "cpu", "--run-once", "--home", home, env=env, timeout=600)

    page.goto(f"{ui(prefect_server)}/runs/flow-run/{good}")
    page.get_by_text("Completed").first.wait_for()
    page.goto(f"{ui(prefect_server)}/artifacts/key/{artifact_key('prepare', split)}")
    page.get_by_text("This run").first.wait_for()
    text = page.inner_text("body")
    assert f"Split {split} in the catalog" in text or split in text
    assert "2 processed, 0 already done" in text

    page.goto(f"{ui(prefect_server)}/runs/flow-run/{bad}")
    line = page.get_by_text(f"error: {source.parent / 'missing.parquet'}: no such file or folder")
    line.first.wait_for()
    assert "Traceback" not in page.inner_text("body")
