"""``raysweep ui``: the MLflow UI on the same store the sweeps and reports log to.

Why a wrapper: the right flags for a quick start (one worker, no job runner), artifacts served
from where ``raysweep.tracking`` puts them, bound to 127.0.0.1, links that open the classic runs
table (MLflow 3 opens experiments in its GenAI view), and a clean stop of the server's whole
process group on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from raysweep import tracking
from raysweep.tracking import runs_link

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0


class UIError(ValueError):
    """The UI cannot start (port in use, server exited); the message is shown as is."""


def server_command(uri: str, port: int) -> list[str]:
    """``mlflow ui`` on ``uri``, bound to 127.0.0.1, serving artifacts from raysweep's artifact root."""
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe)] if exe.exists() else [shutil.which("mlflow") or "mlflow"]
    cmd += ["ui", "--backend-store-uri", uri, "--host", HOST, "--port", str(port), "--workers", "1"]
    root = tracking.artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root, "--artifacts-destination", root]
    return cmd


def serve(tracking_uri: str | None, port: int, say: Callable[[str], None] = print) -> int:
    """Run the UI until Ctrl-C/SIGTERM; returns the exit status."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        say(f"{uri} is a tracking server: open it in a browser (it is its own UI)")
        _links(uri, uri.rstrip("/"), say)
        return 0
    try:
        tracking.check_store(uri)
    except tracking.StoreError as exc:
        raise UIError(str(exc)) from None
    _check_port(port)
    log = Path(tempfile.gettempdir()) / f"raysweep-ui-{port}.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(server_command(uri, port), stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        base = f"http://{HOST}:{port}"
        _wait_healthy(proc, base, log)
        say(f"MLflow UI on {uri}: {base}  (server log: {log}; Ctrl-C stops it)")
        _links(uri, base, say)
        code = proc.wait()
        say(f"the MLflow server exited with status {code} (log: {log})")
        return 0 if code == 0 else 1
    except KeyboardInterrupt:
        say("stopping the MLflow UI")
        return 0
    finally:
        _stop(proc)
        signal.signal(signal.SIGTERM, previous)


def _links(uri: str, base: str, say: Callable[[str], None]) -> None:
    for exp in tracking.client(uri).search_experiments():
        say(f"  {exp.name}: {runs_link(base, exp.experiment_id)}")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            raise UIError(f"port {port} on {HOST} is in use; pass another --port") from None


def _wait_healthy(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise UIError(f"the MLflow server exited with status {proc.returncode}: {tail[0]} (log: {log})")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise UIError(f"the MLflow server did not answer {base}/health within {START_TIMEOUT_S:.0f} s (log: {log})")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
