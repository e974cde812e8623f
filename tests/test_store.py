"""The local SQLite store under many writers: a new store created by several processes at once, and
two sweeps (one of 8 trials at once) logging every epoch into one store at the same time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fakes
from test_reliability import _kill_marked  # SIGKILL what a test's Ray left behind

from raysweep import tracking
from raysweep.sweep import SweepOptions, run_sweep

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS), str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_a_new_store_created_by_three_processes_at_once_is_whole_and_in_wal_mode(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    # a process that hangs prints where (every thread's stack) and exits, so the failure says why
    code = ("import faulthandler, sys; faulthandler.dump_traceback_later(240, exit=True); "
            "from raysweep import tracking; tracking.prepare_store(sys.argv[1]); "
            "print(tracking.ensure_experiment(sys.argv[1], 'e'))")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()  # none outlives the test
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-1500:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1  # one experiment, seen by all three
    with sqlite3.connect(tmp_path / "new" / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _histories_whole(uri: str, runs: list, epochs: int) -> None:
    c = tracking.client(uri)
    for r in runs:
        for key in ("train_loss", "val_loss", "val_acc"):
            steps = [m.step for m in c.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), (r.info.run_name, key, steps)


def test_two_sweeps_one_of_eight_trials_at_once_log_every_epoch_into_one_sqlite_store(
    ray_session, tracking_uri, tmp_path
) -> None:
    barrier = tmp_path / "barrier"  # the 8 trials of one sweep and the 2 of the other train their first
    barrier.mkdir()  # epoch only once all 10 have started: both sweeps write at the same time
    both = {"barrier_dir": str(barrier), "barrier_n": 10}
    other = dict(study="cnn", data="synthetic", epochs=40, name="other", tracking_uri=tracking_uri,
                 storage_path=str(tmp_path / "ray-other"), overrides={"filters": "8,16"}, cpus_per_trial=1.0,
                 options={"epoch_s": 0.2, **both}, quiet=True)  # fmt: skip
    script = (f"import fakes\nfrom raysweep.sweep import SweepOptions, run_sweep\n"
              f"run_sweep(SweepOptions(**{other!r}), fakes.scripted_trainable)\n")  # fmt: skip
    token = uuid.uuid4().hex
    log = open(tmp_path / "other.log", "wb")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(RAYSWEEP_TEST_TOKEN=token), cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        c = tracking.client(tracking_uri)
        deadline = time.time() + 300
        while len(list(barrier.iterdir())) < 2:  # the other sweep's 2 trials have started
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "other.log").read_text()[-3000:]
            time.sleep(0.5)
        lrs = ",".join(f"{k}e-4" for k in range(1, 9))
        eight = SweepOptions(study="cnn", data="synthetic", epochs=25, name="mine", tracking_uri=tracking_uri,
                             storage_path=str(tmp_path / "ray-mine"), overrides={"lr": lrs, "filters": "8"},
                             cpus_per_trial=0.2, options=both, quiet=True)  # 8 x 0.2 CPU: all 8 at once, with
        # room for a fraction of a CPU that Ray may still hold for an earlier test (one held 0.1 in CI)
        mine = run_sweep(eight, fakes.scripted_trainable)
        assert proc.wait(timeout=600) == 0, (tmp_path / "other.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_marked(token)
    parent = tracking.find_sweep_run(tracking_uri, "other")
    info = tracking.TrackingInfo(tracking_uri, parent.info.experiment_id, parent.info.run_id)
    mine_runs = tracking.child_runs(tracking_uri, mine.tracking)
    other_runs = tracking.child_runs(tracking_uri, info)
    assert mine.status == "FINISHED" and len(mine_runs) == 8 and len(other_runs) == 2
    everything = c.search_runs([mine.tracking.experiment_id, info.experiment_id])
    assert {r.info.status for r in everything} == {"FINISHED"}  # no run left RUNNING, none failed
    _histories_whole(tracking_uri, mine_runs, 25)
    _histories_whole(tracking_uri, other_runs, 40)
    # they really wrote at the same time: the other sweep logged epochs while this one's trials ran
    start = min(r.info.start_time for r in mine_runs)
    end = max(r.info.end_time for r in mine_runs)
    other_ts = [m.timestamp for r in other_runs for m in c.get_metric_history(r.info.run_id, "val_loss")]
    assert any(start <= t <= end for t in other_ts)
    assert len(list(barrier.iterdir())) == 10  # 8 + 2 trials, all started before any trained
    assert "database is locked" not in (tmp_path / "other.log").read_text()
    with sqlite3.connect(tracking.sqlite_path(tracking_uri)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_child_runs_reads_every_page_of_a_sweep(tracking_uri, monkeypatch) -> None:
    """A sweep with more trial runs than one search returns: the driver still sees all of them
    (resume, closing runs and the audit read them through ``child_runs``)."""
    info = tracking.start_sweep_run(tracking_uri, "paged", "paged-sweep", {}, {})
    c = tracking.client(tracking_uri)
    made = {c.create_run(info.experiment_id, tags={tracking.PARENT_TAG: info.parent_run_id}).info.run_id
            for _ in range(5)}  # fmt: skip
    c.create_run(info.experiment_id)  # not a child of the sweep
    monkeypatch.setattr(tracking, "SEARCH_PAGE", 2)
    assert {r.info.run_id for r in tracking.child_runs(tracking_uri, info)} == made


def test_a_trial_run_created_twice_by_a_retried_request_is_kept_once(tracking_uri, monkeypatch) -> None:
    """A server that commits ``create_run`` and dies before answering: MLflow's HTTP client sends the
    request again and the trial gets two runs. ``open_trial_run`` keeps the first, deletes the other,
    and logs into the one it kept."""
    info = tracking.start_sweep_run(tracking_uri, "retried", "retried-sweep", {}, {})
    real = tracking.client(tracking_uri)

    class LostReply:  # the store's client, but create_run commits twice, as a retried POST does
        def __getattr__(self, name: str):
            return getattr(real, name)

        def create_run(self, *a, **k):
            first = real.create_run(*a, **k)
            time.sleep(0.01)
            real.create_run(*a, **k)
            return first

    server = tracking.TrackingInfo("http://tracking.invalid:5000", info.experiment_id, info.parent_run_id)
    with monkeypatch.context() as m:
        m.setattr(tracking, "client", lambda uri: LostReply())
        logger = tracking.open_trial_run(server, "trial_0", "cnn|synthetic|seed=0", {})
    active = tracking.child_runs(tracking_uri, info)
    assert [r.info.run_id for r in active] == [logger.run_id]
    assert len(real.search_runs([info.experiment_id], run_view_type=3)) == 3  # parent, kept, deleted
