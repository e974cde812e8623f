"""A tracking server that goes away mid-sweep: a restart is waited out (MLflow's HTTP retries with
backoff), nothing is lost or logged twice; one gone for longer than the retry budget fails the trial
with one line naming the server, and `raysweep resume` continues from the checkpoint.

The `mlflow server` is started and stopped here by PID (its process group), also when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import fakes
import pytest
from test_reliability import _kill_marked  # SIGKILL what a test's Ray left behind

from raysweep import tracking
from raysweep.sweep import SweepOptions, resume_sweep, run_sweep

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


class Server:
    """An `mlflow server` on a private port and SQLite file; stop() and start() keep both."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root, self.uri, self.proc = root, f"http://127.0.0.1:{self.port}", None
        self.cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                    "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                    "--artifacts-destination", str(root / "artifacts")]  # fmt: skip

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=3):
                return True
        except OSError:
            return False

    def start(self) -> float:
        """Start it and wait until it answers; the time it did."""
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server holds it
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        deadline = time.time() + 300
        while not self.up():
            assert self.proc.poll() is None and time.time() < deadline, (self.root / "server.log").read_text()[-2000:]
            time.sleep(0.3)
        return time.time()

    def stop(self) -> float:
        """SIGTERM to its process group (the server and its workers), waited for; the time it was sent."""
        sent = time.time()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return sent


@pytest.fixture
def server(tmp_path: Path):
    srv = Server(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _logged_epochs(uri: str, name: str) -> int:
    """The most epochs any trial of sweep ``name`` has logged so far (0 before it exists)."""
    parent = tracking.find_sweep_run(uri, name)
    if parent is None:
        return 0
    info = tracking.TrackingInfo(uri, parent.info.experiment_id, parent.info.run_id)
    c = tracking.client(uri)
    return max((len(c.get_metric_history(r.info.run_id, "val_loss")) for r in tracking.child_runs(uri, info)),
               default=0)  # fmt: skip


def _every_epoch_once(uri: str, runs: list, epochs: int) -> list[int]:
    """Asserts each run logged epochs 1..epochs exactly once per metric; the val_loss timestamps."""
    c, stamps = tracking.client(uri), []
    for r in runs:
        for key in ("train_loss", "val_loss", "val_acc"):
            history = c.get_metric_history(r.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), (key, [m.step for m in history])
            stamps += [m.timestamp / 1000 for m in history if key == "val_loss"]
    return stamps


def test_a_sweep_waits_out_a_server_restart_and_loses_nothing(ray_session, server, tmp_path) -> None:
    outage: dict[str, float] = {}

    def restart() -> None:  # once a trial has logged 2 epochs: 20 s away, then back on the same store
        deadline = time.time() + 600
        while _logged_epochs(server.uri, "restart") < 2 and time.time() < deadline:
            time.sleep(0.5)
        outage["down"] = server.stop()
        time.sleep(20)
        outage["up"] = server.start()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    res = run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=8, name="restart", tracking_uri=server.uri,
                                 storage_path=str(tmp_path / "ray"), overrides={"filters": "8,16"},
                                 options={"epoch_s": 1.0}, cpus_per_trial=1.0, quiet=True),
                    fakes.scripted_trainable)  # fmt: skip
    thread.join(timeout=600)
    assert outage.get("up"), "the server was never restarted"
    assert res.status == "FINISHED" and [t["status"] for t in res.trials] == ["TERMINATED"] * 2
    runs = tracking.child_runs(server.uri, res.tracking)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["raysweep.attempts"] == "1" for r in runs)  # waited, not failed and retried
    stamps = _every_epoch_once(server.uri, runs, 8)
    # an epoch logged while the server was away (from SIGTERM until it answered again) reached it
    # through MLflow's retries, with the timestamp of its first try
    assert any(outage["down"] <= t <= outage["up"] for t in stamps)
    assert tracking.client(server.uri).get_run(res.tracking.parent_run_id).info.status == "FINISHED"


def test_a_server_gone_past_the_retry_budget_fails_the_trial_in_one_line_and_resume_continues(
    ray_session, server, tmp_path
) -> None:
    argv = ["sweep", "cnn", "--data", "synthetic", "--epochs", "6", "--name", "gone", "--tracking-uri", server.uri,
            "--storage-path", str(tmp_path / "ray"), "--set", "filters=8", "--option", "epoch_s=1.0"]  # fmt: skip
    script = ("import sys, fakes\nfrom raysweep import cli, study\n"
              "study.Study.trainable = lambda self: fakes.scripted_trainable\n"
              f"sys.exit(cli.main({argv!r}))\n")  # fmt: skip
    token = uuid.uuid4().hex
    env = {**os.environ, "RAYSWEEP_TEST_TOKEN": token, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # a budget of ~2 s, for the driver and its trials
           "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    out = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - the driver holds it
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 600
        while _logged_epochs(server.uri, "gone") < 2:
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.5)
        server.stop()
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_marked(token)
    log = (tmp_path / "driver.log").read_text()
    gone = f"MLflow tracking server {server.uri} did not answer through 2 retries over ~2 s"
    assert code == 1, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("raysweep: error:")]
    assert len(errors) == 1 and gone in errors[0] and errors[0].endswith("raysweep resume gone"), log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    server.start()
    res = resume_sweep("gone", server.uri, trainable=fakes.scripted_trainable, quiet=True)
    (run,) = tracking.child_runs(server.uri, res.tracking)
    assert res.status == "FINISHED" and run.info.status == "FINISHED"
    assert int(run.data.tags["raysweep.attempts"]) >= 2  # the same run, continued
    _every_epoch_once(server.uri, [run], 6)  # from the checkpoint: no epoch logged twice, none lost
