"""The report at scale, in CI time: 200 trial runs of one sweep, read in batches, every section made.

The 200 runs are written straight into the store in a sweep's layout by the writer that
``benchmarks/report_10000.py`` times at 10,000 (parent + children, the tags and params the training
loop logs, ``amp_reason`` different for every model shape, per-epoch histories, some diverged):
the report's path is what this proves, in seconds. That a real sweep of 1,000 short trials records
every run (none RUNNING) is ``benchmarks/report_1000.py``'s check. No timing here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.report_10000 import write_sweep
from raysweep import cli
from raysweep.analysis import generic, load_runs, runs, select
from raysweep.analysis.report import study_runs

RUNTIME = {"seed", "device", "amp", "amp_reason", "data", "epochs"}


@pytest.fixture
def store_200(tracking_uri: str) -> dict:
    wrote = write_sweep(tracking_uri, "scale", 200)
    return {"uri": tracking_uri, **wrote}


def test_200_trials_load_in_batches_and_report_every_section(store_200, tmp_path, monkeypatch, capsys) -> None:
    from mlflow.tracking import MlflowClient

    def per_run(*a, **k):
        raise AssertionError("a metric history was read run by run")

    monkeypatch.setattr(MlflowClient, "get_metric_history", per_run)
    uri = store_200["uri"]
    df = load_runs("scale", uri)
    assert len(df) == 200 and (df["status"] != "RUNNING").all()
    assert df["sweep_run_id"].eq(store_200["parent_run_id"]).all()
    assert {"best.val_acc", "best.train_loss", "metrics.test_acc", "params.amp_reason"} <= set(df.columns)
    ok = df[df["status"] == "FINISHED"]
    assert (ok["best.val_acc"] == ok["metrics.best_val_acc"]).all()  # the value at the logged best epoch
    assert df["params.amp_reason"].nunique() > 1 and df["params.seed"].nunique() == 5  # runtime columns do vary

    r = study_runs("scale", uri)["cnn"]
    dims = generic.importance_dims(r.runs)
    assert set(dims) == {"lr", "filters", "layers"} and not RUNTIME & set(dims)
    imp = generic.importances(r.runs, r.metric, r.mode)
    assert set(imp) == {"lr", "filters", "layers"} and max(imp, key=imp.get) == "lr", imp

    assert cli.main(["report", "--experiment", "scale", "--tracking-uri", uri, "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    for name in ("trials", "hparams", "curves", "importance"):  # every generic section, none skipped
        assert (tmp_path / "rep" / ("tables" if name == "trials" else "figures") /
                f"cnn_{name}.{'md' if name == 'trials' else 'png'}").is_file(), out  # fmt: skip
    assert "failed:" not in out and "skips trials" not in out and "skips curves" not in out
    assert "a random sample of 50 of the 200 trials drawn as lines" in out  # curves of many runs: a stated sample
    assert "finished trials; varied scientific hyperparameters only" in out
    ranked = pd.read_csv(tmp_path / "rep" / "tables" / "cnn_trials.csv")
    assert len(ranked) == 40  # 200 runs: 40 configurations x 5 seeds


def test_importance_of_many_trials_fits_a_stated_subsample(store_200, monkeypatch) -> None:
    monkeypatch.setattr(generic, "IMPORTANCE_MAX_TRIALS", 60)
    r = study_runs("scale", store_200["uri"])["cnn"]
    used, n = generic.importance_sample(r.runs, r.metric)
    assert len(used) == 60 and n == len(select.scored(r.runs, r.metric)) > 60
    fig = generic.importance_figure(r)
    assert f"a random subsample of 60 of the {n} finished trials" in fig.title and len(fig.runs) == 60


def test_the_ui_lists_the_experiment_and_its_server_reads_the_same_frame(store_200, tmp_path) -> None:
    """`raysweep ui` serves the store; over HTTP the runs come in pages and the histories through the
    server's bulk endpoint, and make the same frame as the SQL read."""
    uri = store_200["uri"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "ui.out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(runs.__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "ui", "--tracking-uri", uri, "--port",
                                 str(port)], stdout=fh, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while "workflowType" not in log.read_text():
            assert proc.poll() is None, f"raysweep ui exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"the UI did not come up: {log.read_text()}"
            time.sleep(0.3)
        assert f"scale: {base}/#/experiments/{store_200['experiment_id']}/runs" in log.read_text()
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search", data=json.dumps(
            {"max_results": 100}).encode(), headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            names = [e["name"] for e in json.load(resp)["experiments"]]
        assert "scale" in names
        over_http = load_runs("scale", base)
        over_sql = load_runs("scale", uri)
        pd.testing.assert_frame_equal(over_http, over_sql, check_dtype=False)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
