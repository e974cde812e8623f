"""End to end in a real browser: `raysweep ui` serves the sweep's runs and the report's artifacts.

Needs a Chromium at ``$RAYSWEEP_BROWSER`` (default Debian's ``/usr/bin/chromium``), driven by
Playwright's Python package (never `playwright install`: it downloads a browser). pip cannot install
it, so on a machine without it the test is skipped with the install command; under CI
(``RAYSWEEP_REQUIRE_BROWSER=1``, set by `.ci/run`, which installs chromium) a missing browser fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from raysweep import tracking

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("RAYSWEEP_BROWSER", "/usr/bin/chromium")
INSTALL = "apt-get update && apt-get install -y chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _browser() -> None:
    """Skip (or, under CI, fail) before the costly sweep fixture runs when there is no browser."""
    if Path(CHROMIUM).exists():
        return
    why = f"no browser at {CHROMIUM} (set RAYSWEEP_BROWSER, or install Debian's: {INSTALL})"
    if os.environ.get("RAYSWEEP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"RAYSWEEP_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


@pytest.fixture
def ui(reported_sweep, tmp_path):
    """`raysweep ui` as a subprocess on the reported sweep's store; stopped by PID afterwards."""
    port, log = _free_port(), tmp_path / "ui.out"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "ui", "--tracking-uri", reported_sweep["uri"],
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not ("workflowType" in log.read_text() and _healthy(base)):
            assert proc.poll() is None, f"raysweep ui exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"the UI did not come up: {log.read_text()}"
            time.sleep(0.3)
        yield {"proc": proc, "base": base, "log": log}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_ui_shows_the_sweep_its_trials_and_the_report_artifacts(ui, reported_sweep) -> None:
    from playwright.sync_api import sync_playwright

    c = tracking.client(reported_sweep["uri"])
    exp = c.get_experiment_by_name(reported_sweep["experiment"])
    runs = c.search_runs([exp.experiment_id])
    sweep = next(r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "sweep")
    trials = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "trial"]
    report = next(r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "report")
    link = f"{ui['base']}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    assert link in ui["log"].read_text()  # printed by `raysweep ui`

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(link, wait_until="domcontentloaded")  # the UI polls: never "networkidle"
            page.get_by_text(sweep.info.run_name).first.wait_for(timeout=60_000)
            assert page.get_by_text(reported_sweep["experiment"]).count() > 0
            page.get_by_role("row").filter(has_text=sweep.info.run_name).get_by_role("button").first.click()
            for t in trials:  # nested under the sweep, shown once expanded
                page.get_by_text(t.info.run_name).first.wait_for(timeout=20_000)

            page.goto(f"{ui['base']}/#/experiments/{exp.experiment_id}/runs/{report.info.run_id}/artifacts",
                      wait_until="domcontentloaded")  # fmt: skip
            page.get_by_text("report.md").first.wait_for(timeout=30_000)
            page.get_by_text("tables", exact=True).first.wait_for(timeout=10_000)
            page.get_by_text("report.md").first.click()
            page.get_by_text("Table 2: staged ablation").first.wait_for(timeout=20_000)
            page.get_by_text("figures", exact=True).first.click()
            page.get_by_text("cnn_figure4.png").first.click()
            page.locator("img[src^='blob:']").first.wait_for(timeout=20_000)
        finally:
            browser.close()

    ui["proc"].send_signal(signal.SIGTERM)  # stops the server's whole process group
    assert ui["proc"].wait(20) == 0
    assert not _healthy(ui["base"])
    assert "stopping the MLflow UI" in ui["log"].read_text()
