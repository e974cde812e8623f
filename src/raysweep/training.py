"""The one training-loop skeleton every study's trainable runs.

A study supplies a ``Task`` (its model, data, one training epoch, evaluation, final test); this
module owns what is the same for all of them: resuming from a checkpoint (also with zero epochs
left), per-epoch reports to Ray Tune and MLflow, checkpoints holding both the last state and the
best weights, early stopping on validation loss, divergence (NaN/inf) handling, and closing the
trial's MLflow run truthfully.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from raysweep import tracking
from raysweep.context import TrialContext  # defined apart so that the sweep driver never imports torch
from raysweep.tracking import OUTCOME_TAG, REASON_TAG, RunLogger


class Task(Protocol):
    """What a study implements; the loop does the rest."""

    model: torch.nn.Module

    def train_epoch(self, epoch: int) -> dict[str, float]: ...  # must hold "train_loss"

    def evaluate(self) -> dict[str, float]: ...  # validation metrics, must hold "val_loss"

    def state_dict(self) -> dict[str, Any]: ...  # model, optimizer, scheduler, RNG

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def finish(self, logger: RunLogger) -> dict[str, float]: ...  # test metrics, best weights loaded

    def model_spec(self) -> dict[str, Any]: ...  # {"name": ..., "config": {...}} for build_model


class Session(Protocol):
    """Where reports and checkpoints go: Ray Tune, a Ray Train worker, or a plain process."""

    rank: int

    def trial_name(self) -> str: ...

    def checkpoint_dir(self) -> contextlib.AbstractContextManager[str | None]: ...

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None: ...

    def num_cpus(self) -> int: ...


class TuneSession:
    """A Ray Tune function trainable's session."""

    rank = 0

    def trial_name(self) -> str:
        from ray import tune

        return tune.get_context().get_trial_name()

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        from ray import tune

        ckpt = tune.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield d

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        from ray import tune

        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=ckpt)

    def num_cpus(self) -> int:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        return max(1, int(cpus))


class LocalSession:
    """Runs a trial in the current process (benchmarks' bare baseline, unit tests)."""

    rank = 0

    def __init__(self, name: str = "local", workdir: str | None = None, cpus: int | None = None):
        self.name = name
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="raysweep-local-"))
        self.cpus = cpus or os.cpu_count() or 1
        self.results: list[dict[str, float]] = []

    def trial_name(self) -> str:
        return self.name

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        ckpt = self.dir / "checkpoint"
        yield str(ckpt) if ckpt.exists() else None

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        self.results.append(dict(metrics))
        if checkpoint_dir:
            dest = self.dir / "checkpoint"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(checkpoint_dir, dest)

    def num_cpus(self) -> int:
        return self.cpus


def pick_device(pref: str = "auto") -> torch.device:
    """CUDA when asked for or available (Ray hides GPUs a trial did not request), else CPU."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA by default; on CPU only when asked (it is slower on most CPUs)."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: torch.nn.Module, option: Any = None) -> Callable[..., Any]:
    """The study option ``compile``: off (unset, 0, false), ``torch.compile`` with inductor (1, true),
    or with the named backend (e.g. ``eager``, ``aot_eager``: quick, for tests). The compiled module
    shares its parameters with ``model``, so checkpoints and ``state_dict`` stay those of ``model``."""
    text = str(option).strip().lower()
    if option is None or text in ("", "0", "false", "off", "no", "none"):
        return model
    backend = "inductor" if text in ("1", "true", "on", "yes", "inductor") else text
    return torch.compile(model, backend=backend)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value > best if mode == "max" else value < best


def run_trial(
    make_task: Callable[[dict[str, Any], TrialContext, torch.device], Task],
    config: dict[str, Any],
    ctx: TrialContext,
    session: Session | None = None,
) -> dict[str, float]:
    """Train one configuration to the end (or early stop / divergence); returns the last metrics."""
    session = session or TuneSession()
    torch.set_num_threads(session.num_cpus())
    device = pick_device(ctx.device)
    logger = RunLogger.disabled()
    if ctx.tracking is not None and session.rank == 0:
        key = tracking.trial_key(ctx.study, ctx.data, config)
        logger = tracking.open_trial_run(
            ctx.tracking, session.trial_name(), key, {"raysweep.study": ctx.study, **ctx.run_tags}
        )
    try:
        last = _train(make_task, config, ctx, session, device, logger)
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        logger.set_tags({OUTCOME_TAG: "killed" if interrupted else "error", REASON_TAG: repr(exc)[:500]})
        logger.end("KILLED" if interrupted else "FAILED")
        raise
    return last


def _train(
    make_task: Callable[[dict[str, Any], TrialContext, torch.device], Task],
    config: dict[str, Any],
    ctx: TrialContext,
    session: Session,
    device: torch.device,
    logger: RunLogger,
) -> dict[str, float]:
    seed_everything(int(config.get("seed", 0)))
    task = make_task(config, ctx, device)
    num_params = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    logger.log_params({**config, "epochs": ctx.epochs, "data": ctx.data, "device": device.type, "amp": ctx.amp})
    logger.log_metrics({"num_params": num_params})

    loop: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": 0, "best_val_loss": None,
                            "stale": 0, "done": False, "last": {}}  # fmt: skip
    best_state: dict[str, Any] | None = None
    with session.checkpoint_dir() as ckpt:
        if ckpt is not None:
            saved = torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=False)
            task.load_state_dict(saved["task"])
            loop = saved["loop"]
            best_state = torch.load(Path(ckpt) / "best_model.pt", map_location="cpu")
    if loop["done"]:  # resumed after the last epoch: nothing to train, report what was measured
        session.report(loop["last"], None)
        logger.end("FINISHED")
        return loop["last"]

    metric = ctx.metric
    for epoch in range(loop["epoch"], ctx.epochs):
        t0 = time.perf_counter()
        train = task.train_epoch(epoch)
        val = task.evaluate()
        metrics = {"epoch": epoch + 1, **train, **val, "num_params": num_params,
                   "epoch_time_s": time.perf_counter() - t0}  # fmt: skip
        losses = [metrics.get("train_loss", 0.0), metrics.get("val_loss", 0.0)]
        if not all(math.isfinite(v) for v in losses):
            reason = f"non-finite loss at epoch {epoch + 1} (train {losses[0]}, val {losses[1]})"
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
            metrics["diverged"] = 1.0
            logger.log_metrics(metrics, step=epoch + 1)
            logger.set_tags({OUTCOME_TAG: "diverged", REASON_TAG: reason})
            logger.end("FAILED")
            session.report(metrics, None)
            return metrics
        if _better(metrics[metric], loop["best"], ctx.mode):
            loop["best"], loop["best_epoch"] = metrics[metric], epoch + 1
            best_state = _cpu_copy(task.model.state_dict())
        if loop["best_val_loss"] is None or metrics["val_loss"] < loop["best_val_loss"]:
            loop["best_val_loss"], loop["stale"] = metrics["val_loss"], 0
        else:
            loop["stale"] += 1
        early = loop["stale"] >= ctx.patience
        last_epoch = early or epoch + 1 == ctx.epochs
        metrics[f"best_{metric}"] = loop["best"]
        metrics["best_epoch"] = loop["best_epoch"]
        if last_epoch:
            task.model.load_state_dict(best_state)
            final = task.finish(logger)
            metrics.update(final)
            logger.log_torch_state(best_state, "model/best.pt")
            logger.log_dict(task.model_spec(), "model/spec.json")
        loop.update(epoch=epoch + 1, done=last_epoch, last=metrics)
        logger.log_metrics(metrics, step=epoch + 1)
        with tempfile.TemporaryDirectory(prefix="raysweep-ckpt-") as tmp:
            torch.save({"task": task.state_dict(), "loop": loop}, Path(tmp) / "state.pt")
            torch.save(best_state, Path(tmp) / "best_model.pt")
            if last_epoch:
                logger.set_tags({OUTCOME_TAG: "early_stopped" if early and epoch + 1 < ctx.epochs
                                 else "completed"})  # fmt: skip
                logger.end("FINISHED")
            session.report(metrics, tmp)
        if last_epoch:
            break
    return loop["last"]
