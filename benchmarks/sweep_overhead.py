"""Sweep overhead: N short CNN trainings as a real sweep vs back to back in one bare process.

Both sides run in a fresh interpreter (start-up and imports count on both) on the same data, with
the same configurations, epochs and torch threads:

- sweep: ``run_sweep`` (Ray in-process, real MLflow SQLite store, checkpoints every epoch), one trial
  at a time holding all the CPUs (so nothing is gained from running trials in parallel);
- bare: ``run_trial(CnnTask, ...)`` with ``LocalSession`` for each configuration, no tracking.

Where the time goes comes from phase timers wrapped around the trial's pieces (task set-up, train,
evaluate, test, MLflow calls, ``tune.report`` with its checkpoint) and wall-clock marks (imports,
``ray.init``, first trial start, gaps between trials, teardown).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BenchContext, PhaseTimer, Run, loadavg, run_child

NAME = "sweep_overhead"
FIGURES = {
    "sweep_overhead_ratio": ("x", "sweep wall time / bare wall time for the same trainings, valid runs only "
                                  "(target <= 1.10)"),
    "sweep_overhead_ratio_all": ("x", "the same ratio for every run, valid or not"),
    "sweep_run_valid": ("", "1 if the run counts: both sides trained within 10 % of each other and trials "
                            "lasted >= 30 s (full mode); else 0"),
    "sweep_wall_s": ("s", "the sweep process, spawn to exit"),
    "bare_wall_s": ("s", "the bare process, spawn to exit"),
    "trial_train_s": ("s", "mean wall time of one trial in the bare process (the trial length)"),
    "sweep_extra_s": ("s", "sweep wall - bare wall"),
    "sweep_per_trial_overhead_s": ("s", "mean (trial in the sweep - same trial bare) + mean gap between trials"),
    "sweep_fixed_overhead_s": ("s", "sweep_extra_s - trials x per-trial overhead; the ratio for N trials of T s "
                                    "is about 1 + (fixed + N per_trial) / (N T)"),
    "sweep_imports_s": ("s", "sweep process: interpreter start and imports (bare: bare_imports_s)"),
    "bare_imports_s": ("s", "bare process: interpreter start and imports"),
    "sweep_ray_init_s": ("s", "ray.init in the driver"),
    "sweep_first_trial_wait_s": ("s", "Tuner.fit start -> first trial enters the trainable (worker start, imports)"),
    "sweep_between_trials_s": ("s", "sum of gaps between one trial's end and the next one's start"),
    "sweep_mlflow_s": ("s", "MLflow calls: driver (parent run, closing) + trials (child runs, metrics, artifacts)"),
    "sweep_report_s": ("s", "tune.report with its checkpoint, summed over trials (bare: copy to a folder)"),
    "sweep_task_init_s": ("s", "task set-up in the trials: data (memory map), split, model, optimizer"),
    "sweep_train_slowdown": ("x", "training time of the trials in the sweep / in the bare process"),
    "sweep_teardown_s": ("s", "last trial end -> sweep process exit (closing runs, ray.shutdown)"),
}

_TRIAL_PHASES = {  # what the trial's phase timers wrap: (module, attribute path, phase)
    ("raysweep.trainables.cnn", "CnnTask.__init__", "task_init"),
    ("raysweep.trainables.cnn", "CnnTask.train_epoch", "train"),
    ("raysweep.trainables.cnn", "CnnTask.evaluate", "evaluate"),
    ("raysweep.trainables.cnn", "CnnTask.finish", "finish"),
    ("raysweep.trainables.cnn", "confusion_figure", "figure"),
    ("raysweep.tracking", "open_trial_run", "mlflow"),
    ("raysweep.training", "TuneSession.report", "report"),
    ("raysweep.training", "LocalSession.report", "report"),
} | {("raysweep.tracking", f"RunLogger.{m}", "mlflow")
     for m in ("log_params", "log_metrics", "set_tags", "log_text", "log_dict", "log_figure", "log_torch_state", "end")}


MAX_TRAIN_GAP = 0.10  # the two sides' training time may differ by this much; more: something else ran
MIN_TRIAL_S = 30.0  # shorter trials measure start-up, not a sweep
_RUNS = 0  # runs of this benchmark in this process (the side that goes first alternates)


def _instrument(timer: PhaseTimer, phases: set[tuple[str, str, str]]) -> None:
    import importlib

    for module, path, phase in sorted(phases):
        obj: Any = importlib.import_module(module)
        *owners, attr = path.split(".")
        for o in owners:
            obj = getattr(obj, o)
        timer.wrap(obj, attr, phase)


def timed_train_cnn(config: dict[str, Any], ctx: Any) -> None:
    """The CNN study's trainable (``train_cnn``) with phase timers; writes them to $RAYSWEEP_BENCH_TRACE."""
    from raysweep.trainables.cnn import train_cnn

    timer = PhaseTimer()
    _instrument(timer, _TRIAL_PHASES)
    timer.mark("start")
    timer.config = config  # type: ignore[attr-defined]
    try:
        train_cnn(config, ctx)
    finally:
        timer.mark("end")
        timer.restore()
        _write_trace(timer)


def _write_trace(timer: PhaseTimer) -> None:
    folder = Path(os.environ["RAYSWEEP_BENCH_TRACE"])
    folder.mkdir(parents=True, exist_ok=True)
    trace = {**timer.as_dict(), "config": json.dumps(getattr(timer, "config", {}), sort_keys=True, default=str)}
    (folder / f"trial-{os.getpid()}-{time.time_ns()}.json").write_text(json.dumps(trace))


def _plan(data: str, epochs: int, filters: str, seeds: int, cpus: int, gpus: float, device: str,
          uri: str, storage: str, name: str) -> Any:  # fmt: skip
    from raysweep.sweep import SweepOptions

    return SweepOptions(study="cnn", space="quick", data=data, experiment="bench", tracking_uri=uri,
                        storage_path=storage, epochs=epochs, overrides={"filters": filters}, repeats=seeds,
                        cpus_per_trial=cpus, gpus_per_trial=gpus, max_concurrent=1, name=name,
                        device=device, quiet=True)  # fmt: skip


def sweep_child(spawn_time: float, trace: str, **kw: Any) -> dict[str, Any]:
    """The sweep side (runs in its own interpreter)."""
    os.environ["RAYSWEEP_BENCH_TRACE"] = trace
    imports_done = time.time()
    import mlflow  # noqa: F401 - the driver needs these; their import time counts
    import ray

    from raysweep import studies, sweep, tracking

    timer = PhaseTimer()
    timer.marks["spawn"], timer.marks["python_ready"] = spawn_time, imports_done
    timer.mark("imports_done")
    timer.wrap(sweep, "init_ray", "ray_init")  # run_sweep calls the package's name (what tests patch too)
    timer.wrap(sweep.tuner, "close_runs", "mlflow")
    timer.wrap(studies.Study, "prepare_data", "prepare_data")
    timer.wrap(sweep.tuner.Runner, "tune", "tuner", mark="fit_start")
    timer.wrap(tracking, "start_sweep_run", "mlflow")
    timer.wrap(tracking.RunLogger, "log_metrics", "mlflow")
    timer.wrap(tracking.RunLogger, "set_tags", "mlflow")
    timer.wrap(tracking.RunLogger, "end", "mlflow")
    opts = _plan(**kw)
    timer.mark("sweep_start")
    with timer.phase("run_sweep"):
        result = sweep.run_sweep(opts, trainable=timed_train_cnn)
    timer.mark("sweep_end")
    with timer.phase("ray_shutdown"):
        ray.shutdown()
    timer.mark("shutdown_end")
    timer.restore()
    statuses = [t["status"] for t in result.trials]
    return {"timer": timer.as_dict(), "statuses": statuses, "sweep_status": result.status,
            "driver_imported_torch": "torch" in sys.modules}  # fmt: skip


def bare_child(spawn_time: float, trace: str, **kw: Any) -> dict[str, Any]:
    """The bare side: the same trainings back to back in this process, no Ray, no MLflow."""
    os.environ["RAYSWEEP_BENCH_TRACE"] = trace
    imports_done = time.time()
    import tempfile

    from raysweep.search_spaces import configs_of
    from raysweep.sweep import plan_sweep
    from raysweep.trainables.cnn import CnnTask
    from raysweep.training import LocalSession, run_trial

    timer = PhaseTimer()
    timer.marks["spawn"], timer.marks["python_ready"] = spawn_time, imports_done
    timer.mark("imports_done")
    plan = plan_sweep(_plan(**kw))
    ctx = plan.trial_context(plan.opts.data)  # what the sweep side's trials are handed, less tracking
    configs = configs_of(plan.space)
    for config in configs:
        trial = PhaseTimer()
        _instrument(trial, _TRIAL_PHASES)
        trial.mark("start")
        trial.config = config  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory() as d:
            run_trial(CnnTask, config, ctx, LocalSession(workdir=d, cpus=int(plan.opts.cpus_per_trial)))
        trial.mark("end")
        trial.restore()
        _write_trace(trial)
    timer.mark("end")
    return {"timer": timer.as_dict(), "trials": len(configs)}


def _traces(folder: Path) -> list[dict[str, Any]]:
    out = [json.loads(p.read_text()) for p in folder.glob("trial-*.json")]
    return sorted(out, key=lambda t: t["marks"]["start"])


def _timeline(marks: dict[str, float], traces: list[dict[str, Any]], wall: float) -> dict[str, float]:
    """Events in seconds since the process was spawned."""
    t0 = marks["spawn"]
    out = {k: round(v - t0, 3) for k, v in sorted(marks.items(), key=lambda kv: kv[1])}
    for i, t in enumerate(traces):
        out[f"trial{i}_start"] = round(t["marks"]["start"] - t0, 3)
        out[f"trial{i}_end"] = round(t["marks"]["end"] - t0, 3)
    out["exit"] = round(wall, 3)
    return out


def _sum(traces: list[dict[str, Any]], phase: str) -> float:
    return sum(t["totals"].get(phase, 0.0) for t in traces)


def run(bc: BenchContext) -> Run:
    from raysweep import tracking
    from raysweep.data.cifar10 import load_cifar10

    data = bc.data("cifar10")
    # full: 3 trials of 3 epochs, >= MIN_TRIAL_S on either CPU seen here (2 epochs took 32 s a trial on
    # the AMD EPYC of 2026-12-03 but 25-31 s on the Xeon of 2026-12-04: too short to count)
    epochs = bc.pick(1, 1, 3)
    filters, seeds = bc.pick(("4,8", 1), ("8,16", 1), ("16", 3))  # trials: 2, 2, 3
    gpus = 1.0 if bc.device == "cuda" else 0.0
    root = bc.workdir / f"sweep_overhead-{time.time_ns()}"
    root.mkdir(parents=True)
    # Untimed preparation: the decoded-data cache and an MLflow store with its schema (a user's
    # store usually exists; creating it runs the schema migrations once).
    load_cifar10(data, "train"), load_cifar10(data, "test")
    template = root / "template.db"
    tracking.ensure_experiment(f"sqlite:///{template}", "bench")
    shutil.copy(template, root / "mlflow.db")
    kw = {"data": data, "epochs": epochs, "filters": filters, "seeds": seeds, "cpus": bc.threads,
          "gpus": gpus, "device": bc.device, "uri": f"sqlite:///{root / 'mlflow.db'}",
          "storage": str(root / "ray_results"), "name": "bench-sweep"}  # fmt: skip
    global _RUNS
    _RUNS += 1
    sides = ["sweep", "bare"] if _RUNS % 2 else ["bare", "sweep"]  # alternate: no side always goes first
    outs = {}
    for side in sides:
        outs[side] = run_child(f"benchmarks.sweep_overhead:{side}_child",
                               {"spawn_time": time.time(), "trace": str(root / side), **kw})  # fmt: skip
    (sweep_out, sweep_wall), (bare_out, bare_wall) = outs["sweep"], outs["bare"]
    if sweep_out["sweep_status"] != "FINISHED" or any(s != "TERMINATED" for s in sweep_out["statuses"]):
        raise RuntimeError(f"the benchmark sweep did not finish cleanly: {sweep_out}")
    st, bt = _traces(root / "sweep"), _traces(root / "bare")
    sm, bm = sweep_out["timer"]["marks"], bare_out["timer"]["marks"]
    gaps = [b["marks"]["start"] - a["marks"]["end"] for a, b in zip(st, st[1:], strict=False)]
    n = len(bt)
    bare_by_config = {t["config"]: t["marks"]["end"] - t["marks"]["start"] for t in bt}
    per_trial = sum(t["marks"]["end"] - t["marks"]["start"] - bare_by_config[t["config"]] for t in st) / n
    per_trial += sum(gaps) / n
    slowdown = _sum(st, "train") / max(_sum(bt, "train"), 1e-9)
    trial_s = (bt[-1]["marks"]["end"] - bt[0]["marks"]["start"]) / n if n else float("nan")
    gap = abs(slowdown - 1)
    why_invalid = [w for bad, w in (
        (not bc.smoke and gap > MAX_TRAIN_GAP,
         f"the sides trained {gap:.0%} apart (sweep_train_slowdown {slowdown:.3f}; load {loadavg()})"),
        (not bc.smoke and not bc.quick and trial_s < MIN_TRIAL_S, f"trials of {trial_s:.0f} s < {MIN_TRIAL_S:.0f} s"),
    ) if bad]  # fmt: skip
    figures = {
        "sweep_overhead_ratio": float("nan") if why_invalid else sweep_wall / bare_wall,
        "sweep_overhead_ratio_all": sweep_wall / bare_wall,
        "sweep_run_valid": 0.0 if why_invalid else 1.0,
        "sweep_wall_s": sweep_wall,
        "bare_wall_s": bare_wall,
        "trial_train_s": trial_s,
        "sweep_extra_s": sweep_wall - bare_wall,
        "sweep_per_trial_overhead_s": per_trial,
        "sweep_fixed_overhead_s": sweep_wall - bare_wall - n * per_trial,
        "sweep_imports_s": sm["imports_done"] - sm["spawn"],
        "bare_imports_s": bm["imports_done"] - bm["spawn"],
        "sweep_ray_init_s": sweep_out["timer"]["totals"].get("ray_init", 0.0),
        "sweep_first_trial_wait_s": st[0]["marks"]["start"] - sm["fit_start"],
        "sweep_between_trials_s": sum(gaps),
        "sweep_mlflow_s": _sum(st, "mlflow") + _sum(st, "figure") + sweep_out["timer"]["totals"].get("mlflow", 0.0),
        "sweep_report_s": _sum(st, "report"),
        "sweep_task_init_s": _sum(st, "task_init"),
        "sweep_train_slowdown": slowdown,
        "sweep_teardown_s": sweep_wall - (st[-1]["marks"]["end"] - sm["spawn"]),
    }
    details = {"trials": n, "epochs": epochs, "data": data, "threads": bc.threads,
               "sweep_phases": {p: _sum(st, p) for p in ("task_init", "train", "evaluate", "finish", "figure",
                                                         "mlflow", "report")},
               "bare_phases": {p: _sum(bt, p) for p in ("task_init", "train", "evaluate", "finish", "report")},
               "driver_phases": sweep_out["timer"]["totals"],
               "driver_imported_torch": sweep_out["driver_imported_torch"],
               "sweep_timeline_s": _timeline(sm, st, sweep_wall),
               "bare_timeline_s": _timeline(bm, bt, bare_wall)}  # fmt: skip
    notes = [f"{n} trials (quick space, filters {filters}, {seeds} seed(s)), {epochs} epoch(s) each, data "
             f"{Path(data).name if '/' in data else data}; one trial at a time, holding {bc.threads} CPU(s) = "
             f"torch threads on both sides; fresh MLflow SQLite store (schema created beforehand), "
             f"decoded-data cache warm; sweep and bare take turns going first"]  # fmt: skip
    if why_invalid:
        notes.append(f"run {_RUNS} invalid, not counted in sweep_overhead_ratio: {'; '.join(why_invalid)}")
    shutil.rmtree(root / "ray_results", ignore_errors=True)
    return Run(figures, notes, details=details)
