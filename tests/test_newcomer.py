"""A newcomer's first hour: live progress before a trial ends, and a dry run that costs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysweep import cli, tracking
from raysweep.sweep import SweepOptions, dry_run_sweep, run_sweep
from raysweep.sweep.dryrun import SWEEP_START_S

QUICK = {"study": "cnn", "space": "quick", "data": "synthetic", "epochs": 3}


def test_progress_lines_come_every_epoch_before_the_first_trial_ends(ray_session, tracking_uri, tmp_path,
                                                                     capsys) -> None:  # fmt: skip
    res = run_sweep(SweepOptions(**QUICK, storage_path=str(tmp_path / "r")))
    out = capsys.readouterr().out.splitlines()
    assert res.status == "FINISHED"
    first_done = next(i for i, line in enumerate(out) if line.startswith("[1] "))
    epochs = [line for line in out[:first_done] if " epoch " in line and "s/epoch, ETA" in line]
    assert {line.split(" epoch ")[1].split()[0] for line in epochs} >= {"1/3", "2/3"}
    assert any(line.strip().startswith("sweep: 0/2 trials done") and "ETA" in line for line in out[:first_done])
    ui = next(line for line in out if line.startswith("MLflow UI: "))
    assert f"/#/experiments/{res.tracking.experiment_id}/runs?workflowType=machine_learning" in ui


def test_quiet_keeps_only_the_summary(ray_session, tracking_uri, tmp_path, capsys) -> None:
    run_sweep(SweepOptions(**QUICK, storage_path=str(tmp_path / "r"), quiet=True))
    out = capsys.readouterr().out
    assert "best run" in out and " epoch " not in out and "[1] " not in out


def test_dry_run_measures_the_sweep_and_writes_nothing(ray_session, tmp_path, monkeypatch, capsys) -> None:
    """No store, no Ray results, no file at all where it ran; the estimate adds up its measured trials.
    (How close it comes to a real sweep is the benchmark figure ``dry_run_estimate_ratio``.)"""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    est = dry_run_sweep(SweepOptions(**QUICK, storage_path=str(tmp_path / "r")))
    assert not Path(tmp_path / "mlflow.db").exists() and not (tmp_path / "r").exists()  # no store, no run
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert "2 trials" in out and "filters=8" in out and "estimate:" in out and "peak" in out and "disk" in out
    assert est["to_run"] == 2 and len(est["trial_s"]) == 2 and min(est["trial_s"]) > 0
    assert est["total_s"] == pytest.approx(SWEEP_START_S + sum(est["trial_s"]) / est["concurrent"])


def test_dry_run_of_the_report_grid_lists_81_trials_and_marks_finished_ones(ray_session, tracking_uri, tmp_path,
                                                                           capsys) -> None:  # fmt: skip
    code = cli.main(["sweep", "cnn", "--space", "report_grid", "--data", "synthetic", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "81 trials" in out and "estimate: 81 trial(s) to run" in out
    assert tracking.client(tracking_uri).search_runs(
        [e.experiment_id for e in tracking.client(tracking_uri).search_experiments()]) == []  # fmt: skip
    opts = SweepOptions(**QUICK, storage_path=str(tmp_path / "r"), quiet=True, name="named-quick")
    run_sweep(opts)
    capsys.readouterr()
    est = dry_run_sweep(SweepOptions(**{**QUICK, "epochs": 3}, storage_path=str(tmp_path / "r"), name="named-quick",
                                     overrides={"filters": "8,16,24"}))  # fmt: skip
    out = capsys.readouterr().out
    assert est["trials"] == 3 and est["to_run"] == 1 and out.count("[finished (not run again)]") == 2
