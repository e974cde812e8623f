"""A real two-node Ray cluster (`ray start` head + worker), a real `mlflow server` on a real
PostgreSQL (as cluster.yaml sets up the head), `ray job submit`.

Everything is started here as separate processes and stopped by PID (process group; PostgreSQL by
its postmaster's PID), also when the test fails; processes that outlive that (Ray's agents) are found
by an environment token. PostgreSQL: Debian's `postgresql` package (.ci/run installs it); it will not
run as root, so as root it runs as the `postgres` user (`runuser`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from test_reliability import _kill_marked  # SIGKILL what a test's Ray left behind

from raysweep import tracking

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode()
    except OSError:
        return None


def _wait(what: str, check, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f}s")


def _pg_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    on_path = shutil.which("initdb")
    return Path(found[-1]).parent if found else Path(on_path).parent if on_path else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL on a private port and socket folder, trust auth, with a database
    `mlflow` owned by a role `mlflow`; yields its SQLAlchemy URI. Stopped by its postmaster's PID."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server programs (Debian: apt-get install -y postgresql)")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="raysweep-pg-"))  # pytest's tmp_path is root's alone
    if as_pg:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
    data, sock, port = root / "data", root / "sock", _free_port()
    pid = None
    try:
        subprocess.run(as_pg + ["mkdir", str(sock)], check=True)
        subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
        subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "pg.log"),
                                "-w", "-t", "300", "start"], check=True, capture_output=True, timeout=330)  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().split()[0])
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
        subprocess.run(psql + ["-c", "CREATE ROLE mlflow LOGIN", "-c", "CREATE DATABASE mlflow OWNER mlflow"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown: ends every backend, then itself
            deadline = time.time() + 60
            while Path(f"/proc/{pid}").exists() and time.time() < deadline:
                time.sleep(0.2)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path, postgres: str):
    """Head (1 CPU) + worker (1 CPU) + MLflow server on PostgreSQL, all on 127.0.0.1."""
    token = uuid.uuid4().hex
    gcs, dash, mlf = _free_port(), _free_port(), _free_port()
    head_agent, worker_agent = _free_port(), _free_port()  # the default (52365) may be taken by another Ray
    env = {**os.environ, "RAYSWEEP_TEST_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, cmd: list[str]) -> None:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed at teardown
        procs.append(subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True))  # fmt: skip

    try:
        start("head", [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                       "--port", str(gcs), "--num-cpus", "1", "--include-dashboard", "true",
                       "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                       "--dashboard-agent-listen-port", str(head_agent),
                       "--disable-usage-stats"])  # fmt: skip
        start("mlflow", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlf), "--workers", "1",
                         "--backend-store-uri", postgres,
                         "--artifacts-destination", str(tmp_path / "artifacts")])  # fmt: skip
        _wait("ray dashboard", lambda: _get(f"http://127.0.0.1:{dash}/api/version") is not None)
        start("worker", [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
                         "--address", f"127.0.0.1:{gcs}", "--num-cpus", "1",
                         "--dashboard-agent-listen-port", str(worker_agent)])  # fmt: skip
        _wait("two alive nodes",
              lambda: (_get(f"http://127.0.0.1:{dash}/api/v0/nodes?limit=10") or "").count('"ALIVE"') >= 2)
        _wait("mlflow server", lambda: _get(f"http://127.0.0.1:{mlf}/health") is not None)
        yield {"dashboard": f"http://127.0.0.1:{dash}", "mlflow": f"http://127.0.0.1:{mlf}", "env": env,
               "tmp": tmp_path, "postgres": postgres}  # fmt: skip
    except Exception:
        for f in logs.iterdir():
            print(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}")
        raise
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        _kill_marked(token)
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` points `ray.init()` at itself
        if current.exists() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()


def test_job_submitted_sweep_runs_trials_on_both_nodes_and_logs_to_the_server(cluster) -> None:
    storage = cluster["tmp"] / "shared-storage"
    sweep = [str(BIN / "raysweep"), "sweep", "cnn", "--data", "synthetic", "--epochs", "3",
             "--set", "filters=8,16", "--address", "auto", "--tracking-uri", cluster["mlflow"],
             "--storage-path", str(storage), "--experiment", "multinode", "--name", "mn",
             "--option", "figures=1"]  # fmt: skip
    submit = [str(BIN / "ray"), "job", "submit", "--address", cluster["dashboard"], "--"] + sweep
    deadline = time.time() + 180
    while True:  # the head's job agent starts a little after the dashboard answers
        done = subprocess.run(submit, env=cluster["env"], cwd=cluster["tmp"], capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        if "No available agent to submit job" not in done.stderr or time.time() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sweep mn: 2 trials, status FINISHED" in done.stdout

    c = tracking.client(cluster["mlflow"])
    exp = c.get_experiment_by_name("multinode")
    runs = c.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "trial"]
    parents = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "sweep"]
    assert len(parents) == 1 and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["raysweep.node_id"] for r in children}) == 2  # one trial per node
    assert all("val_acc" in r.data.metrics for r in children)
    artifacts = {a.path for a in c.list_artifacts(children[0].info.run_id)}
    assert "confusion_matrix.png" in artifacts  # artifacts went through the server too
    # the server kept them in PostgreSQL: the trial runs are rows of its database
    import sqlalchemy

    with sqlalchemy.create_engine(cluster["postgres"]).connect() as db:
        stored = db.execute(sqlalchemy.text("SELECT run_uuid, status FROM runs")).all()
    assert {(r.info.run_id, "FINISHED") for r in runs} <= set(stored)


def test_shared_storage_check_refuses_a_folder_some_node_cannot_see(monkeypatch, tmp_path) -> None:
    """On one machine every node sees every folder, so the remote check's answer is faked."""
    import ray

    from raysweep.search_spaces import SpaceError
    from raysweep.sweep import placement

    nodes = [{"NodeID": "a" * 56, "Alive": True}, {"NodeID": "b" * 56, "Alive": True}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "get", lambda refs, timeout=None: [True, False])
    monkeypatch.setattr(ray, "remote", lambda **kw: (lambda f: _FakeRemote()))
    with pytest.raises(SpaceError, match="node\\(s\\) bbbbbbbb cannot see it.*NFS.*s3://"):
        placement.check_storage_shared(str(tmp_path / "node-local"))
    assert not list((tmp_path / "node-local").iterdir())  # the marker file is cleaned up


class _FakeRemote:
    def options(self, **kw):
        return self

    def remote(self, *a):
        return object()
