"""Early stopping on the true clock and on the record: ASHA decides on the loop's epoch (also after a
SIGKILL and `raysweep resume`), and every trial it stops says where, on what and against what."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import fakes
import fakes_gate
import numpy as np
import pytest
from test_reliability import TESTS, _children, _kill_marked

from raysweep import tracking
from raysweep.sweep import SweepOptions, resume_sweep, run_sweep


def _stops(uri: str, result_or_info) -> dict[str, dict]:
    """filters -> the run's ``raysweep.stop.*`` tags and its val_acc by epoch, for stopped runs."""
    c = tracking.client(uri)
    out = {}
    for r in _children(uri, result_or_info):
        tags = {k[len("raysweep.stop."):]: v for k, v in r.data.tags.items() if k.startswith("raysweep.stop.")}
        if r.data.tags.get(tracking.OUTCOME_TAG) == "stopped_by_scheduler":
            hist = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "val_acc")}
            out[r.data.params["filters"]] = {**tags, "history": hist, "run": r}
    return out


def _start_gated_driver(tmp_path: Path, token: str, opts: dict) -> subprocess.Popen:
    """The sweep driver with ``fakes_gate.gated_trainable``, in its own process group (see test_reliability)."""
    script = (f"import fakes_gate\nfrom raysweep.sweep import SweepOptions, run_sweep\n"
              f"run_sweep(SweepOptions(**{opts!r}), fakes_gate.gated_trainable)\n")  # fmt: skip
    env = {**os.environ, "RAYSWEEP_TEST_TOKEN": token,
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def _val_acc(filters: int, epoch: int) -> float:
    """fakes.ScriptedTask's val_acc after ``epoch`` epochs (counted from 1)."""
    loss = 1.0 / epoch + 1.0 / filters + 0.05
    return 1.0 / (1.0 + loss)


def test_each_stop_is_tagged_with_its_rung_value_cutoff_and_the_trials_compared(
    ray_session, tracking_uri, tmp_path
) -> None:
    res = run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=4, scheduler="asha", max_concurrent=1,
                                 overrides={"filters": "64,32,16,8"}, storage_path=str(tmp_path / "r"),
                                 quiet=True), fakes.scripted_trainable)  # fmt: skip
    stops = _stops(tracking_uri, res)
    # one at a time, best first: at the epoch-2 rung each later trial is below the 2/3 quantile of those before
    assert sorted(stops, key=int) == ["8", "16", "32"], stops
    for filters, s in stops.items():
        assert s["rung"] == "2" and max(s["history"]) == 2  # stopped at the rung, on the loop's epoch
        assert float(s["value"]) == pytest.approx(s["history"][2]) == pytest.approx(_val_acc(int(filters), 2))
        assert s["metric"] == "val_acc" and float(s["value"]) < float(s["cutoff"])
    assert [stops[f]["compared_with"] for f in ("32", "16", "8")] == ["1", "2", "3"]
    assert float(stops["32"]["cutoff"]) == pytest.approx(_val_acc(64, 2))  # one trial before it: its value


def test_a_sigkilled_asha_sweep_resumed_decides_on_true_epochs(ray_session, tracking_uri, tmp_path) -> None:
    """One trial at a time: filters=32 finishes, filters=8 is stopped at the epoch-2 rung, and
    filters=16 is held at epoch 1 when the driver is SIGKILLed. Resumed, filters=16 reports epoch 2
    (Tune's training_iteration says 1) and is judged at the epoch-2 rung against both earlier trials,
    which the resumed scheduler knows from the record; filters=8's stop survived the kill, so it is
    not trained on."""
    token, gate = uuid.uuid4().hex, tmp_path / "gate"
    gate.mkdir()
    opts = dict(study="cnn", data="synthetic", epochs=4, name="asha-kill", scheduler="asha", max_concurrent=1,
                storage_path=str(tmp_path / "ray"), tracking_uri=tracking_uri, overrides={"filters": "32,8,16"},
                options={"gate_dir": str(gate), "gate_filters": 16})  # fmt: skip
    proc = _start_gated_driver(tmp_path, token, opts)
    try:
        deadline = time.time() + 180
        while not (gate / "waiting").exists():  # filters=16 reported epoch 1 (and its checkpoint)
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_marked(token)
    parent = tracking.find_sweep_run(tracking_uri, "asha-kill")
    info = tracking.TrackingInfo(tracking_uri, parent.info.experiment_id, parent.info.run_id)
    c = tracking.client(tracking_uri)
    before = {r.data.params["filters"]: r for r in _children(tracking_uri, info)}
    assert before["32"].info.status == "FINISHED" and before["16"].info.status == "RUNNING"
    assert [m.step for m in c.get_metric_history(before["16"].info.run_id, "val_acc")] == [1]  # at epoch k=1
    assert before["8"].data.tags["raysweep.stop.rung"] == "2"  # the stop is on the record though the driver died

    (gate / "open").touch()
    res = resume_sweep("asha-kill", tracking_uri, trainable=fakes_gate.gated_trainable, quiet=True)
    assert res.status == "FINISHED"
    stops = _stops(tracking_uri, info)
    s16 = stops["16"]
    assert s16["run"].info.run_id == before["16"].info.run_id and s16["run"].data.tags["raysweep.attempts"] == "2"
    assert sorted(s16["history"]) == [1, 2]  # epoch 1 before the kill, epoch 2 after: stopped at the rung
    assert s16["rung"] == "2" and s16["compared_with"] == "2"  # against filters=32 and 8, from the record
    assert float(s16["cutoff"]) == pytest.approx(np.percentile([_val_acc(32, 2), _val_acc(8, 2)], 200 / 3))
    assert float(s16["value"]) == pytest.approx(_val_acc(16, 2))
    s8 = stops["8"]  # not trained on after the resume, and closed as what it was
    assert s8["rung"] == "2" and s8["compared_with"] == "1" and sorted(s8["history"]) == [1, 2]
    assert s8["run"].info.status == "FINISHED" and s8["run"].data.tags["raysweep.attempts"] == "1"
    assert sorted(t["config"]["filters"] for t in res.trials) == [8, 16, 32]


def test_a_fresh_scheduler_takes_the_recorded_rungs_and_a_resumed_trial_its_own() -> None:
    """The seeding itself: earlier trials fill the rungs they reached; a resumed trial is not
    judged again at a rung it passed before the kill."""
    from raysweep.sweep.asha import RecordedASHA

    history = {"done": {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.8, 6: 0.9}, "resumed": {1: 0.4, 2: 0.5, 3: 0.55}}
    sched = RecordedASHA(lambda config: config["key"], history, max_t=18, grace_period=2, reduction_factor=3)
    sched.set_search_properties("val_acc", "max")
    trial = SimpleNamespace(trial_id="t1", config={"key": "resumed"})
    sched.on_trial_add(None, trial)
    rungs = dict(sched._brackets[0]._rungs)
    assert set(rungs) == {2, 6, 18}
    assert rungs[2] == {"done": 0.6, "t1": 0.5} and rungs[6] == {"done": 0.9} and rungs[18] == {}
    assert sched.on_trial_result(None, trial, {"epoch": 4, "val_acc": 0.1}) == "CONTINUE"  # rung 2 was passed
    assert sched.on_trial_result(None, trial, {"epoch": 6, "val_acc": 0.6}) == "STOP"
    d = sched.decisions["resumed"]
    assert (d.rung, d.value, d.cutoff, d.compared_with) == (6, 0.6, pytest.approx(0.9), 1)


def test_the_report_lists_each_early_stopping_decision(ray_session, tracking_uri, tmp_path) -> None:
    from raysweep.analysis.early_stopping import decisions_table
    from raysweep.analysis.registry import StudyRuns
    from raysweep.analysis.runs import load_runs, load_sweeps

    run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=4, scheduler="asha", max_concurrent=1,
                           experiment="es", overrides={"filters": "64,32,16"}, storage_path=str(tmp_path / "r"),
                           quiet=True), fakes.scripted_trainable)  # fmt: skip
    runs = load_runs("es", tracking_uri)
    table = decisions_table(StudyRuns("es", tracking_uri, "cnn", runs, load_sweeps("es", tracking_uri),
                                      "val_acc", "max"))  # fmt: skip
    frame = table.frame
    assert list(frame["filters"]) == [32, 16]  # the stopped trials, best at their rung first
    assert list(frame["rung (epoch)"]) == [2, 2] and list(frame["trials compared"]) == [1, 2]
    assert frame["val_acc at rung"].iloc[0] == pytest.approx(_val_acc(32, 2))
    assert frame["cut-off"].iloc[0] == pytest.approx(_val_acc(64, 2))
    assert "2 of 3 trials stopped early" in table.title


def test_a_sweep_without_stops_has_no_decisions_table(ray_session, tracking_uri, tmp_path) -> None:
    from raysweep.analysis.early_stopping import decisions_table
    from raysweep.analysis.registry import Skip, StudyRuns
    from raysweep.analysis.runs import load_runs, load_sweeps

    run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=1, experiment="fifo",
                           overrides={"filters": "8"}, storage_path=str(tmp_path / "r"), quiet=True),
              fakes.scripted_trainable)  # fmt: skip
    r = StudyRuns("fifo", tracking_uri, "cnn", load_runs("fifo", tracking_uri), load_sweeps("fifo", tracking_uri),
                  "val_acc", "max")  # fmt: skip
    with pytest.raises(Skip, match="no trial was stopped by a scheduler"):
        decisions_table(r)

