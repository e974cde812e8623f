"""``raysweep report`` over 10,000 trial runs, where the peers' tools break (mlflow #2730).

No sweep trains them: ``write_sweep`` writes a sweep's layout straight into a SQLite store in bulk,
through MLflow's own table definitions (``mlflow.store.tracking.dbmodels``) and one transaction:
a parent run made by ``tracking.start_sweep_run`` as a sweep makes it, and under it trial runs with
the tags, params (runtime records ``amp_reason`` etc. included) and per-epoch metrics the training
loop logs, a few of them diverged (FAILED). Then ``raysweep report`` runs in a fresh process and is
timed from the process's start to its exit.

``report_s_10000_runs``: that wall time (target <= 120 s on a 2-core CPU).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from typing import Any

from benchmarks.common import BenchContext, Run, run_child

NAME = "report_10000"
FIGURES = {
    "report_s_10000_runs": ("s", "`raysweep report` over 10,000 trial runs of one sweep (10 epochs each), a fresh "
                                 "process, start to exit (target <= 120)"),
    "report_10000_load_s": ("s", "of which reading the runs into the DataFrame (load_runs)"),
    "report_10000_write_s": ("s", "writing the 10,000 runs into the SQLite store (not part of the report)"),
}  # fmt: skip

LRS = [10 ** (-4 + 3 * i / 39) for i in range(40)]  # 1e-4 .. 1e-1, log-spaced
FILTERS = (8, 16, 32, 64, 128)
LAYERS = tuple(range(3, 13))
PER_EPOCH = ("train_loss", "train_acc", "val_loss", "val_acc")


def configs(n: int, seeds: int) -> list[dict[str, Any]]:
    """``n`` trial configs: n // seeds configurations of the lr x filters x layers grid (in a fixed random
    order, so that a few of them vary every dimension), each with every seed."""
    grid = [{"lr": lr, "batch_size": 64, "filters": f, "layers": la} for la in LAYERS for f in FILTERS for lr in LRS]
    random.Random(0).shuffle(grid)
    per = max(1, n // seeds)
    if per > len(grid):
        raise ValueError(f"at most {len(grid) * seeds} trials with {seeds} seeds")
    return [{**c, "seed": s} for c in grid[:per] for s in range(seeds)][:n]


def curve(cfg: dict[str, Any], epochs: int) -> tuple[list[float], int | None]:
    """Validation accuracy per epoch of a config, and the epoch (1-based) where it diverges, if it does.

    lr matters most (peak near 3e-3), filters somewhat, layers not at all; seeds add noise."""
    rng = random.Random(hash((cfg["lr"], cfg["filters"], cfg["layers"], cfg["seed"])) & 0xFFFFFFFF)
    top = 0.9 - 0.12 * abs(math.log10(cfg["lr"]) + 2.5) + 0.01 * math.log2(cfg["filters"] / 8)
    accs = [top * (1 - math.exp(-(e + 1) / 2.5)) + rng.gauss(0, 0.005) for e in range(epochs)]
    diverges = 2 if cfg["lr"] > 0.05 and cfg["seed"] % 2 == 0 else None
    return accs, diverges


def write_sweep(uri: str, experiment: str, n: int, epochs: int = 10, seeds: int = 5) -> dict[str, Any]:
    """A sweep of ``n`` finished (or diverged) trial runs written into the store at ``uri`` in bulk."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import create_engine, insert

    from raysweep import tracking

    name = f"{experiment}-sweep"
    info = tracking.start_sweep_run(uri, experiment, name, params={
        "study": "cnn", "space": "bench", "search": "grid", "scheduler": "fifo", "epochs": epochs,
        "num_samples": 1, "repeats": seeds, "data": "synthetic", "metric": "val_acc", "varied": "lr,filters,layers"},
        tags={"raysweep.study": "cnn", "raysweep.space": "bench", "raysweep.sweep_name": name})  # fmt: skip
    exp = tracking.client(uri).get_experiment(info.experiment_id)
    runs, tags, params, metrics, latest = [], [], [], [], []
    t0 = int(time.time() * 1000) - n * 1000
    for i, cfg in enumerate(configs(n, seeds)):
        rid = uuid.uuid4().hex
        accs, diverges = curve(cfg, epochs)
        last = (diverges or epochs + 1) - 1  # epochs logged with finite values
        start, end = t0 + i * 1000, t0 + i * 1000 + 900
        status, outcome = ("FAILED", "diverged") if diverges else ("FINISHED", "completed")
        runs.append({"run_uuid": rid, "name": f"trial_{i:05d}", "source_type": "UNKNOWN", "source_name": "",
                     "entry_point_name": "", "user_id": "bench", "status": status, "start_time": start,
                     "end_time": end, "source_version": "", "lifecycle_stage": "active",
                     "artifact_uri": f"{exp.artifact_location}/{rid}/artifacts",
                     "experiment_id": int(info.experiment_id)})  # fmt: skip
        key = tracking.trial_key("cnn", "synthetic", cfg)
        for k, v in {tracking.PARENT_TAG: info.parent_run_id, tracking.KIND_TAG: "trial", tracking.KEY_TAG: key,
                     "raysweep.attempts": "1", "raysweep.node": "bench", "raysweep.study": "cnn",
                     tracking.OUTCOME_TAG: outcome, "mlflow.runName": f"trial_{i:05d}", "mlflow.user": "bench",
                     **({tracking.REASON_TAG: "non-finite loss at epoch 2"} if diverges else {})}.items():  # fmt: skip
            tags.append({"key": k, "value": str(v), "run_uuid": rid})
        for k, v in {**cfg, "epochs": epochs, "data": "synthetic", "device": "cpu", "amp": "off",
                     "amp_reason": f"probe: fp32 faster for {cfg['filters']}x{cfg['layers']}"}.items():  # fmt: skip
            params.append({"key": k, "value": str(v), "run_uuid": rid})
        best, best_epoch, values, mine = -1.0, 0, {}, []
        for e in range(1, last + 1):
            acc = accs[e - 1]
            if acc > best:
                best, best_epoch = acc, e
            values = {"epoch": e, "train_loss": 2.0 * (1 - acc), "train_acc": acc + 0.02, "val_loss": 2.1 * (1 - acc),
                      "val_acc": acc, "num_params": 1000 * cfg["filters"] * cfg["layers"], "epoch_time_s": 0.9,
                      "best_val_acc": best, "best_epoch": best_epoch}  # fmt: skip
            if e == epochs:
                accs_best = accs[best_epoch - 1]
                values.update(test_acc=accs_best - 0.01, test_loss=2.1 * (1 - accs_best))
            mine += [{"key": k, "value": float(v), "timestamp": start + 90 * e, "run_uuid": rid, "step": e,
                      "is_nan": False} for k, v in values.items()]  # fmt: skip
        if diverges:
            values = {"epoch": diverges, "diverged": 1.0}
            mine += [{"key": k, "value": float(v), "timestamp": start + 90 * diverges, "run_uuid": rid,
                      "step": diverges, "is_nan": False} for k, v in values.items()]  # fmt: skip
        metrics += mine
        latest += list({m["key"]: m for m in mine}.values())  # each key at its last (highest) step
    engine = create_engine(uri)
    try:
        with engine.begin() as con:  # one transaction; executemany per table
            for model, rows in ((SqlRun, runs), (SqlTag, tags), (SqlParam, params), (SqlMetric, metrics),
                                (SqlLatestMetric, latest)):  # fmt: skip
                for j in range(0, len(rows), 50_000):
                    con.execute(insert(model.__table__), rows[j : j + 50_000])
    finally:
        engine.dispose()
    tracking.RunLogger(uri, info.parent_run_id).end("FINISHED")
    return {"experiment_id": info.experiment_id, "parent_run_id": info.parent_run_id, "trials": n,
            "metric_rows": len(metrics)}  # fmt: skip


def report_child(uri: str, experiment: str, out: str) -> dict[str, Any]:
    """In a fresh interpreter: ``raysweep report`` as the CLI runs it; load_runs timed on its own too."""
    import contextlib
    import io

    from raysweep import cli
    from raysweep.analysis import runs

    t0 = time.perf_counter()
    loaded: list[float] = []
    original = runs.load_runs

    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            loaded.append(time.perf_counter() - t)

    runs.load_runs = timed
    import raysweep.analysis.report as report

    report.load_runs = timed
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(["report", "--experiment", experiment, "--tracking-uri", uri, "--out", out])
    text = buf.getvalue()
    return {"code": code, "seconds": time.perf_counter() - t0, "load_s": sum(loaded), "stdout": text[-6000:],
            "figures": text.count("\nfigure ") + text.startswith("figure "),
            "skipped": [ln for ln in text.splitlines() if ln.startswith("skipped:")],
            "failed": [ln for ln in text.splitlines() if " failed: " in ln]}  # fmt: skip


def time_report(uri: str, experiment: str, out: str) -> tuple[dict[str, Any], float]:
    """The report in a fresh process: (its result, wall seconds from spawn to exit)."""
    res, wall = run_child("benchmarks.report_10000:report_child", {"uri": uri, "experiment": experiment, "out": out})
    if res["code"] != 0 or res["failed"]:
        raise RuntimeError(f"raysweep report exited {res['code']}: {res['failed'] or res['stdout'][-2000:]}")
    return res, wall


def run(bc: BenchContext) -> Run:
    n = bc.pick(200, 10_000, 10_000)
    root = bc.workdir / f"report_10000-{time.time_ns()}"
    root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    t0 = time.perf_counter()
    wrote = write_sweep(uri, "bulk", n)
    write_s = time.perf_counter() - t0
    res, wall = time_report(uri, "bulk", str(root / "report"))
    notes = [f"{n} trial runs (10 epochs each, {wrote['metric_rows']:,} metric rows) under one sweep, written "
             f"straight into SQLite in {write_s:.0f} s; the report (cnn study: every generic and cnn section) in a "
             f"fresh process; sections skipped for want of artifacts: {len(res['skipped'])}"]  # fmt: skip
    return Run({"report_s_10000_runs": wall, "report_10000_load_s": res["load_s"], "report_10000_write_s": write_s},
               notes, details={"skipped": res["skipped"], "trials": n})  # fmt: skip
