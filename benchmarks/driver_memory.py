"""Resident memory of the sweep driver over a 100-trial sweep of a trivial, fast trainable.

The trainable is the real training loop (``run_trial``: MLflow child run, per-epoch reports with a
checkpoint, final test) around a task that trains nothing (a 2x2 linear layer, two epochs), so a
trial lasts about a second and the driver sees everything a real trial sends it. In a fresh
process: a short warm-up sweep (imports, Ray, MLflow, Tune's first-use allocations), then the
measured sweep while a thread samples the driver's RSS every 50 ms.

``driver_mb_per_trial`` = (peak RSS during the measured sweep - RSS before it) / trials.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from benchmarks.common import BenchContext, Run, rss_mb, run_child

NAME = "driver_memory"
FIGURES = {
    "driver_mb_per_trial": ("MiB", "driver RSS growth per trial: (peak - before) / trials (target: a few MiB at most)"),
    "driver_retained_mb_per_trial": ("MiB", "RSS still held after the sweep, per trial: (after - before) / trials"),
    "driver_peak_mb": ("MiB", "peak driver RSS during the measured sweep"),
    "driver_before_mb": ("MiB", "driver RSS after the warm-up sweep, before the measured one"),
    "driver_trials_per_min": ("1/min", "trials finished per minute (2 at a time, 1 CPU each)"),
}


class TinyTask:
    """A task that trains nothing: the loop, reports, checkpoints and MLflow calls are what run."""

    def __init__(self, config: dict[str, Any], ctx: Any, device: Any) -> None:
        import torch

        self.model = torch.nn.Linear(2, 2)
        self.config = config

    def train_epoch(self, epoch: int) -> dict[str, float]:
        return {"train_loss": 1.0 / (epoch + 1), "train_acc": 0.5}

    def evaluate(self) -> dict[str, float]:
        return {"val_loss": 1.0, "val_acc": float(self.config["lr"])}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def finish(self, logger: Any) -> dict[str, float]:
        return {"test_acc": 0.5, "test_loss": 1.0}

    def model_spec(self) -> dict[str, Any]:
        return {"name": "linear", "config": {}}


def tiny_trainable(config: dict[str, Any], ctx: Any) -> None:
    from raysweep.training import run_trial

    run_trial(TinyTask, config, ctx)


def memory_child(trials: int, warmup: int, root: str) -> dict[str, Any]:
    """In a fresh interpreter: warm-up sweep, then the measured sweep with RSS sampling."""
    import ray

    from raysweep.sweep import SweepOptions, run_sweep

    def sweep(n: int, name: str) -> Any:
        opts = SweepOptions(study="cnn", space="tune_lr", data="synthetic", search="random", num_samples=n,
                            epochs=2, tracking_uri=f"sqlite:///{root}/mlflow.db", storage_path=f"{root}/ray_results",
                            experiment="memory", name=name, cpus_per_trial=1, quiet=True)  # fmt: skip
        return run_sweep(opts, trainable=tiny_trainable)

    if warmup:
        sweep(warmup, "warmup")
    gc.collect()
    before = rss_mb()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, rss_mb()))
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    result = sweep(trials, "measured")
    elapsed = time.perf_counter() - t0
    stop.set()
    th.join()
    gc.collect()
    after = rss_mb()
    ray.shutdown()
    done = sum(1 for t in result.trials if t["status"] == "TERMINATED")
    peak = max(v for _, v in samples)
    step = max(1, len(samples) // 200)
    return {"before": before, "peak": peak, "after": after, "trials": trials, "done": done, "seconds": elapsed,
            "samples": samples[::step]}


def run(bc: BenchContext) -> Run:
    trials, warmup = bc.pick((4, 0), (100, 4), (100, 4))
    root = bc.workdir / f"driver_memory-{time.time_ns()}"
    root.mkdir(parents=True)
    out, _ = run_child("benchmarks.driver_memory:memory_child", {"trials": trials, "warmup": warmup, "root": str(root)})
    if out["done"] != trials:
        raise RuntimeError(f"only {out['done']} of {trials} trials finished")
    figures = {
        "driver_mb_per_trial": (out["peak"] - out["before"]) / trials,
        "driver_retained_mb_per_trial": (out["after"] - out["before"]) / trials,
        "driver_peak_mb": out["peak"],
        "driver_before_mb": out["before"],
        "driver_trials_per_min": trials / out["seconds"] * 60,
    }
    notes = [f"{trials} trials (after a {warmup}-trial warm-up sweep in the same driver; smoke: none), 2 epochs "
             "each, a 2x2 linear task through the real training loop, MLflow SQLite, 1 CPU per trial"]  # fmt: skip
    return Run(figures, notes, details={"rss_samples_s_mb": out["samples"]})
