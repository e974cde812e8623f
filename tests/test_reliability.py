"""Sweeps that survive crashes: divergence, worker death, SIGKILL of the driver, extended grids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fakes
import pytest

from raysweep import tracking
from raysweep.sweep import SweepOptions, resume_sweep, run_sweep

TESTS = Path(__file__).resolve().parent


def _children(uri: str, result_or_info) -> list:
    info = getattr(result_or_info, "tracking", result_or_info)
    return tracking.child_runs(uri, info)


def _opts(tmp_path: Path, **kw) -> SweepOptions:
    base = dict(study="cnn", data="synthetic", epochs=3, storage_path=str(tmp_path / "ray"), quiet=True)
    return SweepOptions(**{**base, **kw})


def test_nan_trial_is_marked_diverged_and_the_sweep_finishes(ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(_opts(tmp_path, overrides={"lr": "0.001,1.0", "filters": "8"}), fakes.scripted_trainable)
    assert res.status == "FINISHED"
    runs = {r.data.params["lr"]: r for r in _children(tracking_uri, res)}
    assert runs["1.0"].info.status == "FAILED"
    assert runs["1.0"].data.tags[tracking.OUTCOME_TAG] == "diverged"
    assert "non-finite" in runs["1.0"].data.tags[tracking.REASON_TAG]
    assert runs["0.001"].info.status == "FINISHED"
    assert res.best["config"]["lr"] == 0.001


def test_extending_a_grid_reruns_nothing_done(ray_session, tracking_uri, tmp_path) -> None:
    first = run_sweep(_opts(tmp_path, name="grow", overrides={"filters": "8,16"}), fakes.scripted_trainable)
    before = {r.info.run_id for r in _children(tracking_uri, first)}
    again = resume_sweep("grow", tracking_uri, {"filters": "8,16,32"}, trainable=fakes.scripted_trainable, quiet=True)
    runs = _children(tracking_uri, again)
    assert len(runs) == 3 and before < {r.info.run_id for r in runs}
    assert sorted(r.data.params["filters"] for r in runs) == ["16", "32", "8"]
    assert all(r.data.tags["raysweep.attempts"] == "1" for r in runs)  # nothing reopened
    assert all(r.info.status == "FINISHED" for r in runs)
    assert again.best["config"]["filters"] == 32
    parent = tracking.client(tracking_uri).get_run(again.tracking.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_id == first.tracking.parent_run_id


def test_a_crashed_worker_is_retried_from_its_checkpoint(ray_session, tracking_uri, tmp_path) -> None:
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    res = run_sweep(_opts(tmp_path, overrides={"filters": "8"}, options={"crash_dir": str(crash_dir)},
                          max_failures=2), fakes.scripted_trainable)  # fmt: skip
    assert (crash_dir / "crashed-8").exists()  # it really died once
    (run,) = _children(tracking_uri, res)
    assert run.info.status == "FINISHED" and run.data.tags["raysweep.attempts"] == "2"
    steps = [m.step for m in tracking.client(tracking_uri).get_metric_history(run.info.run_id, "val_loss")]
    assert sorted(steps) == [1, 2, 3]  # epoch 1 came from the checkpoint, not trained again
    assert res.status == "FINISHED"


def _kill_marked(token: str) -> None:
    """SIGKILL every process whose environment carries ``token`` (Ray's daemons outlive SIGTERM)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if f"RAYSWEEP_TEST_TOKEN={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, PermissionError):
            pass


def _start_driver(tmp_path: Path, token: str, opts: dict) -> subprocess.Popen:
    """The sweep driver in its own process group (with its in-process Ray), logging to a file."""
    script = (f"import fakes\nfrom raysweep.sweep import SweepOptions, run_sweep\n"
              f"run_sweep(SweepOptions(**{opts!r}), fakes.scripted_trainable)\n")  # fmt: skip
    return _start_script(tmp_path, token, script)


def _start_cli(tmp_path: Path, token: str, argv: list[str]) -> subprocess.Popen:
    """``raysweep ARGV`` as a user runs it (its exit status is the CLI's), the fake trainable training."""
    script = ("import sys, fakes\nfrom raysweep import cli, study\n"
              "study.Study.trainable = lambda self: fakes.scripted_trainable\n"
              f"sys.exit(cli.main({argv!r}))\n")  # fmt: skip
    return _start_script(tmp_path, token, script)


def _start_script(tmp_path: Path, token: str, script: str) -> subprocess.Popen:
    env = {**os.environ, "RAYSWEEP_TEST_TOKEN": token, "TUNE_GLOBAL_CHECKPOINT_S": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def _wait_for(tmp_path: Path, uri: str, name: str, enough) -> tracking.TrackingInfo:
    """Poll MLflow until ``enough(child runs)``; the sweep's TrackingInfo."""
    c = tracking.client(uri)
    deadline = time.time() + 180
    while time.time() < deadline:
        parent = tracking.find_sweep_run(uri, name)
        if parent:
            info = tracking.TrackingInfo(uri, parent.info.experiment_id, parent.info.run_id)
            if enough(c, _children(uri, info)):
                return info
        time.sleep(0.5)
    pytest.fail("the sweep never got there:\n" + (tmp_path / "driver.log").read_text()[-3000:])


def _sweep_opts(tmp_path: Path, uri: str, name: str) -> dict:
    return dict(study="cnn", data="synthetic", epochs=6, name=name, storage_path=str(tmp_path / "ray"),
                tracking_uri=uri, overrides={"filters": "8,16,32"}, options={"epoch_s": 1.0},
                max_concurrent=2)  # fmt: skip


def test_sigkill_of_the_driver_then_resume_leaves_one_finished_run_per_config(
    ray_session, tracking_uri, tmp_path
) -> None:
    token = uuid.uuid4().hex
    opts = {**_sweep_opts(tmp_path, tracking_uri, "killme"), "overrides": {"filters": "32,16,8"}}  # best first
    proc = _start_driver(tmp_path, token, opts)
    try:  # killed once the best configuration has finished and another is under way
        def enough(c, runs) -> bool:  # two run at once, so the best need not be the first to finish
            running = [r for r in runs if r.info.status == "RUNNING"]
            return any(r.info.status == "FINISHED" and r.data.params.get("filters") == "32" for r in runs) and any(
                len(c.get_metric_history(r.info.run_id, "val_loss")) >= 1 for r in running)

        info = _wait_for(tmp_path, tracking_uri, "killme", enough)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_marked(token)
    assert tracking.client(tracking_uri).get_run(info.parent_run_id).info.status == "RUNNING"
    assert any(r.info.status == "RUNNING" for r in _children(tracking_uri, info))
    finished_before = {r.data.params["filters"]: r.info.run_id for r in _children(tracking_uri, info)
                       if r.info.status == "FINISHED"}  # fmt: skip
    assert "32" in finished_before

    # resumed as Ray users do, by the sweep's folder under the storage path
    res = resume_sweep(str(tmp_path / "ray" / "killme"), tracking_uri, trainable=fakes.scripted_trainable,
                       quiet=True)  # fmt: skip
    runs = _children(tracking_uri, info)
    keys = [r.data.tags[tracking.KEY_TAG] for r in runs]
    assert len(keys) == len(set(keys)) == 3  # exactly one run per configuration
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert res.status == "FINISHED"
    assert tracking.client(tracking_uri).get_run(info.parent_run_id).info.status == "FINISHED"
    assert sorted(t["config"]["filters"] for t in res.trials) == [8, 16, 32]
    assert res.best["config"]["filters"] == 32 and res.best["run_id"] == finished_before["32"]  # named, not "?"


def test_ctrl_c_exits_130_ranks_only_finished_trials_names_the_interrupted_ones_and_resume_finishes(
    ray_session, tracking_uri, tmp_path
) -> None:
    token = uuid.uuid4().hex
    argv = ["sweep", "cnn", "--data", "synthetic", "--epochs", "6", "--name", "ctrlc", "--tracking-uri", tracking_uri,
            "--storage-path", str(tmp_path / "ray"), "--set", "filters=8,32", "--option", "epoch_s=0.5",
            "--option", "slow_filters=32"]  # both at once, the better one 4x slower
    proc = _start_cli(tmp_path, token, argv)
    try:  # interrupted once a trial has finished and another is part-way (1 to 4 epochs of 6)
        def enough(c, runs) -> bool:
            epochs = [len(c.get_metric_history(r.info.run_id, "val_loss")) for r in runs if r.info.status == "RUNNING"]
            return any(r.info.status == "FINISHED" for r in runs) and any(1 <= n <= 4 for n in epochs)

        info = _wait_for(tmp_path, tracking_uri, "ctrlc", enough)
        os.kill(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_marked(token)
    log = (tmp_path / "driver.log").read_text()
    assert code == 130, log[-3000:]
    assert "interrupted; finished trials are kept. Continue with: raysweep resume ctrlc" in log
    c = tracking.client(tracking_uri)
    assert c.get_run(info.parent_run_id).info.status == "KILLED"
    runs = _children(tracking_uri, info)
    assert "RUNNING" not in {r.info.status for r in runs}
    finished = {r.data.params["filters"] for r in runs if r.info.status == "FINISHED"}
    cut = {r.data.params["filters"]: len(c.get_metric_history(r.info.run_id, "val_loss"))
           for r in runs if r.info.status == "KILLED"}  # fmt: skip
    assert finished and cut
    summary = log[log.index("sweep ctrlc: 2 trials, status KILLED"):]
    assert f"finished    : {len(finished)} of 2 trial(s)" in summary
    for filters, epochs in cut.items():  # each interrupted trial, at the epoch MLflow has for it
        assert f"filters={filters}: interrupted after epoch {epochs} of 6" in summary, summary
    best = next(line for line in summary.splitlines() if line.startswith("  best config"))
    assert best.split("filters=")[1].split()[0] in finished  # never a trial cut short

    res = resume_sweep("ctrlc", tracking_uri, trainable=fakes.scripted_trainable, quiet=True)
    runs = _children(tracking_uri, info)
    assert res.status == "FINISHED" and len(runs) == 2
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    for r in runs:  # the interrupted trials continued from their checkpoints: every epoch logged once
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6], (r.data.params["filters"], steps)


def test_the_summary_of_an_interrupted_sweep_ranks_finished_trials_only() -> None:
    from raysweep.sweep import plan_sweep, summary
    from raysweep.sweep.summary import SweepResult, best_trial

    plan = plan_sweep(SweepOptions(study="cnn", data="synthetic", epochs=15, overrides={"filters": "8,16,32"}))
    done = {"config": {"filters": 8}, "score": 0.61, "status": "TERMINATED", "metrics": {"epoch": 15}, "run_id": "a"}
    cut = {"config": {"filters": 32}, "score": 0.9, "status": "RUNNING", "metrics": {"epoch": 1}, "run_id": "b"}
    waiting = {"config": {"filters": 16}, "score": None, "status": "RUNNING", "metrics": {}}
    errored = {"config": {"filters": 16}, "score": 0.95, "status": "ERROR", "metrics": {"epoch": 2}, "error": "x"}
    trials = [done, cut, waiting, errored]
    assert best_trial(trials, "max") is done  # 0.9 and 0.95 came from 1 and 2 epochs of 15
    assert best_trial([cut, waiting], "max") is None
    text = summary(SweepResult("s1", tracking.TrackingInfo("sqlite://", "0", "p"), trials, done, status="KILLED"), plan)
    assert "  best config : filters=8" in text and "filters=32" not in text.split("interrupted :")[0]
    assert "  finished    : 1 of 4 trial(s), the only ones ranked\n    filters=8: val_acc 0.6100" in text
    assert "  interrupted : 2 trial(s), not ranked; continue with: raysweep resume s1" in text
    assert "    filters=32: interrupted after epoch 1 of 15, val_acc 0.9000 so far" in text
    assert "    filters=16: not started" in text
