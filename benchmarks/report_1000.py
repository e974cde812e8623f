"""A real sweep of 1,000 short trials end to end, then ``raysweep report`` over it.

The sweep is ``run_sweep`` as the CLI runs it (Ray in-process, MLflow SQLite, the training loop with
its child run, per-epoch report, checkpoint, final test and artifacts), 200 configurations (40 lr x
5 filters of the cnn study's space) x 5 seeds, one epoch each, 2 trials at a time. Its trainable
trains nothing (the study's CNN, 3 layers of 4-16 filters, with a validation accuracy that follows
from the config, as in ``report_10000.curve``), so the time is what the sweep costs around a trial. ``--amp auto``
probes each model width, so ``amp_reason`` differs between configurations, as it did in the
report that did not finish (issue 25).

Checked, else the run fails: every trial's child run is in the store, none RUNNING.

- ``sweep_overhead_s_per_short_trial``: the sweep's wall time / trials.
- ``sweep_1000_driver_growth_mb``: driver RSS over the last tenth of the sweep minus over its second
  tenth (flat: about 0). The first tenth is start-up (Ray, the first trials' imports), not growth.
- ``report_s_1000_trials``: ``raysweep report`` over the sweep in a fresh process, start to exit
  (importance included; target <= 15 s on a 2-core CPU).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.common import BenchContext, Run, rss_mb, run_child
from benchmarks.report_10000 import LRS, curve, time_report

NAME = "report_1000"
FILTERS = (4, 6, 8, 12, 16)  # CNN widths: small weights, so 1,000 checkpoints and artifacts stay small
FIGURES = {
    "report_s_1000_trials": ("s", "`raysweep report` over a 1,000-trial sweep (200 configs x 5 seeds), a fresh "
                                  "process, start to exit, importance included (target <= 15)"),
    "report_1000_load_s": ("s", "of which reading the runs into the DataFrame (load_runs)"),
    "sweep_overhead_s_per_short_trial": ("s", "sweep wall time / trials, for 1-epoch trials that train nothing "
                                              "(2 at a time, MLflow SQLite)"),
    "sweep_1000_driver_growth_mb": ("MiB", "driver RSS: mean over the sweep's last tenth - mean over its second "
                                           "tenth (after start-up)"),
}  # fmt: skip


class ShortTask:
    """One epoch of nothing: the loop, MLflow run, report, checkpoint and artifacts are what run."""

    def __init__(self, config: dict[str, Any], ctx: Any, device: Any) -> None:
        from raysweep.models import build_model

        # the study's own CNN (a few thousand weights at these widths): --amp auto probes each width, and the
        # report's feature-map figure loads the best one's weights
        self.model = build_model("cnn", filters=int(config["filters"]), layers=int(config["layers"]), dropout=0.5)
        self.config, self.epoch = config, 0

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        return {"train_loss": 1.0 / (epoch + 1), "train_acc": 0.5}

    def evaluate(self) -> dict[str, float]:
        accs, _ = curve(self.config, self.epoch + 1)
        return {"val_loss": 2.0 * (1 - accs[-1]), "val_acc": accs[-1]}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def finish(self, logger: Any) -> dict[str, float]:
        return {"test_acc": self.evaluate()["val_acc"] - 0.01}

    def model_spec(self) -> dict[str, Any]:
        return {"name": "cnn", "config": {"filters": int(self.config["filters"]), "layers": int(self.config["layers"]),
                                          "dropout": 0.5}}  # fmt: skip


def short_trainable(config: dict[str, Any], ctx: Any) -> None:
    from raysweep.training import run_trial

    run_trial(ShortTask, config, ctx)


def sweep_child(root: str, lrs: int, filters: int, seeds: int) -> dict[str, Any]:
    """In a fresh interpreter: the sweep, sampling the driver's RSS every 0.2 s; then the checks."""
    import ray

    from raysweep import tracking
    from raysweep.sweep import SweepOptions, run_sweep

    uri = f"sqlite:///{root}/mlflow.db"
    opts = SweepOptions(study="cnn", space="report_grid", data="synthetic", epochs=1, repeats=seeds, experiment="short",
                        tracking_uri=uri, storage_path=f"{root}/ray_results", name="short", quiet=True,
                        overrides={"lr": ",".join(f"{v:.6g}" for v in LRS[:: max(1, len(LRS) // lrs)][:lrs]),
                                   "filters": ",".join(str(f) for f in FILTERS[:filters]), "layers": "3",
                                   "batch_size": "64"})  # fmt: skip
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb())
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    result = run_sweep(opts, trainable=short_trainable)
    seconds = time.perf_counter() - t0
    stop.set()
    th.join()
    ray.shutdown()
    children = tracking.child_runs(uri, result.tracking)
    tenth = max(1, len(samples) // 10)
    return {"seconds": seconds, "trials": len(result.trials), "uri": uri,
            "runs": len(children), "running": sum(r.info.status == "RUNNING" for r in children),
            "statuses": sorted({r.info.status for r in children}),
            # the first tenth holds Ray's start-up and the first trials' imports: growth is measured after it
            "growth_mb": sum(samples[-tenth:]) / tenth - sum(samples[tenth : 2 * tenth]) / tenth,
            "peak_mb": max(samples)}  # fmt: skip


def run(bc: BenchContext) -> Run:
    lrs, filters, seeds = bc.pick((4, 2, 2), (40, 5, 5), (40, 5, 5))
    n = lrs * filters * seeds
    root = bc.workdir / f"report_1000-{time.time_ns()}"
    root.mkdir(parents=True)
    sweep, _ = run_child("benchmarks.report_1000:sweep_child", {"root": str(root), "lrs": lrs, "filters": filters,
                                                                 "seeds": seeds}, timeout=3600)  # fmt: skip
    if sweep["trials"] != n or sweep["runs"] != n or sweep["running"]:
        raise RuntimeError(f"{n} trials asked for: {sweep['trials']} ran, {sweep['runs']} child runs recorded, "
                           f"{sweep['running']} left RUNNING")  # fmt: skip
    res, wall = time_report(sweep["uri"], "short", str(root / "report"))
    notes = [f"{n} trials ({lrs * filters} configurations x {seeds} seeds, 1 epoch each), all {n} child runs "
             f"recorded ({', '.join(sweep['statuses'])}), none RUNNING; driver peak RSS {sweep['peak_mb']:.0f} MiB; "
             f"the report skipped {len(res['skipped'])} section(s) for want of artifacts"]  # fmt: skip
    figures = {"report_s_1000_trials": wall, "report_1000_load_s": res["load_s"],
               "sweep_overhead_s_per_short_trial": sweep["seconds"] / n,
               "sweep_1000_driver_growth_mb": sweep["growth_mb"]}  # fmt: skip
    return Run(figures, notes, details={"trials": n, "sweep_s": sweep["seconds"], "skipped": res["skipped"]})
