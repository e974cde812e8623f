"""Short trials: a raysweep sweep of many ~1 s trials against Optuna's own in-process loop.

Many users run hundreds of short trials on one machine, where the alternative is
``optuna.study.optimize`` in one process. Both sides train the same configurations, in the same
order, with the same seeds and the same model code (the cnn study's ``CnnTask`` through
``training.run_trial``), one trial at a time holding every CPU, each in a fresh interpreter (start-up
and imports count on both sides):

- raysweep: ``run_sweep`` (Ray in-process, MLflow SQLite store, a checkpoint per epoch);
- optuna: ``optuna.create_study`` (in memory) with every configuration enqueued, ``study.optimize``
  calling ``run_trial`` with a ``LocalSession``: no tracker, no scheduler.

The ratio is what an experiment tracker and a distributed scheduler cost over a bare loop.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from benchmarks.common import BenchContext, Run, run_child

NAME = "short_trials"
FIGURES = {
    "short_trials_vs_optuna_ratio": ("x", "raysweep sweep wall time / optuna.study.optimize wall time, same "
                                          "trainings (target <= 1.10)"),  # fmt: skip
    "short_trials_raysweep_s": ("s", "the raysweep side, spawn to exit"),
    "short_trials_optuna_s": ("s", "the optuna side, spawn to exit"),
    "short_trials_trial_s": ("s", "mean wall time of one training on the optuna side (the trial length)"),
    "short_trials_overhead_s_per_trial": ("s", "(raysweep wall - optuna wall) / trials"),
}
EPOCHS = 3  # epochs per trial: about 1 s of training in all on a 2-core CPU, with a report and checkpoint each
_RUNS = 0  # runs in this process: the side that goes first alternates


def _lrs(n: int) -> list[float]:
    """``n`` distinct learning rates, log-spaced over 1e-3..1e-1: a grid of ``n`` trainings."""
    return [round(10 ** (-3 + 2 * i / max(1, n - 1)), 6) for i in range(n)]


def _opts(n: int, data: str, threads: int, device: str, uri: str, storage: str) -> Any:
    from raysweep.sweep import SweepOptions

    overrides = {"lr": ",".join(map(str, _lrs(n))), "filters": "4", "layers": "3", "batch_size": "128"}
    return SweepOptions(study="cnn", space="quick", data=data, experiment="bench", tracking_uri=uri,
                        storage_path=storage, epochs=EPOCHS, overrides=overrides, cpus_per_trial=threads,
                        max_concurrent=1, name="bench-short", device=device, quiet=True)  # fmt: skip


def raysweep_child(**kw: Any) -> dict[str, Any]:
    """The raysweep side (its own interpreter)."""
    import ray

    from raysweep.sweep import run_sweep

    result = run_sweep(_opts(**kw))
    ray.shutdown()
    return {"status": result.status, "trials": len(result.trials),
            "finished": sum(t["status"] == "TERMINATED" for t in result.trials)}  # fmt: skip


def optuna_child(**kw: Any) -> dict[str, Any]:
    """The optuna side: the same trainings through ``study.optimize`` in this process."""
    import tempfile

    import optuna

    from raysweep.search_spaces import configs_of
    from raysweep.sweep import plan_sweep
    from raysweep.trainables.cnn import CnnTask
    from raysweep.training import LocalSession, run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = plan_sweep(_opts(**kw))
    ctx = plan.trial_context(plan.opts.data)  # what the sweep's trials are handed, less tracking
    configs = configs_of(plan.space)
    lrs = sorted({c["lr"] for c in configs})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for c in configs:
        study.enqueue_trial({"lr": c["lr"]})
    by_lr = {c["lr"]: c for c in configs}
    times: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        config = by_lr[trial.suggest_categorical("lr", lrs)]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            last = run_trial(CnnTask, config, ctx, LocalSession(workdir=d, cpus=int(plan.opts.cpus_per_trial)))
        times.append(time.perf_counter() - t0)
        return float(last.get(f"best_{plan.study.metric}", last.get(plan.study.metric, float("nan"))))

    study.optimize(objective, n_trials=len(configs))
    return {"trials": len(study.trials), "trial_s": sum(times) / max(1, len(times))}


def run(bc: BenchContext) -> Run:
    from raysweep import tracking

    n = bc.pick(2, 30, 100)
    root = bc.workdir / f"short_trials-{time.time_ns()}"
    root.mkdir(parents=True)
    template = root / "template.db"  # a user's store exists already: its schema is not timed
    tracking.ensure_experiment(f"sqlite:///{template}", "bench")
    shutil.copy(template, root / "mlflow.db")
    kw = {"n": n, "data": "synthetic", "threads": bc.threads, "device": bc.device,
          "uri": f"sqlite:///{root / 'mlflow.db'}", "storage": str(root / "ray_results")}  # fmt: skip
    global _RUNS
    _RUNS += 1
    sides = ["raysweep", "optuna"] if _RUNS % 2 else ["optuna", "raysweep"]
    outs = {side: run_child(f"benchmarks.short_trials:{side}_child", kw) for side in sides}
    (rs, rs_wall), (op, op_wall) = outs["raysweep"], outs["optuna"]
    if rs["status"] != "FINISHED" or rs["finished"] != n or op["trials"] != n:
        raise RuntimeError(f"the sides did not both train {n} trials: raysweep {rs}, optuna {op}")
    figures = {
        "short_trials_vs_optuna_ratio": rs_wall / op_wall,
        "short_trials_raysweep_s": rs_wall,
        "short_trials_optuna_s": op_wall,
        "short_trials_trial_s": op["trial_s"],
        "short_trials_overhead_s_per_trial": (rs_wall - op_wall) / n,
    }
    notes = [f"{n} trials of the cnn study (filters 4, layers 3, batch 128, {EPOCHS} epochs of synthetic data, "
             f"lr log-spaced 1e-3..1e-1, seed 0), one at a time holding {bc.threads} CPU(s) on both sides; "
             f"sides took turns going first ({' then '.join(sides)} in this run)"]  # fmt: skip
    shutil.rmtree(root / "ray_results", ignore_errors=True)
    return Run(figures, notes, details={"trials": n, "order": sides})
