"""The one training-loop skeleton every study's trainable runs.

A study supplies a ``Task`` (its model, data, one training epoch, evaluation, final test); this
module owns what is the same for all of them: resuming from a checkpoint (also with zero epochs
left), per-epoch reports to the session and MLflow, checkpoints holding both the last state and the
best weights, early stopping, divergence handling, and closing the trial's MLflow run truthfully.

Metric names come from the ``TrialContext``: ``metric``/``mode`` pick the best weights,
``stop_metric``/``stop_mode`` drive early stopping, and any non-finite reported value is divergence.
A trial that trained less than ``FIGURE_MIN_TRAIN_S`` logs the data of its figures but draws none
(runtime option ``figures``: 1 always, 0 never); the report draws them from that data.
Only rank 0 logs to MLflow; a task keeps the ranks of a worker group in step by reducing its
metrics over them (``all_reduce_sum``), so every rank decides the same.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch

from raysweep import tracking
from raysweep.context import TrialContext
from raysweep.tracking import OUTCOME_TAG, REASON_TAG, RunLogger
from raysweep.training.amp import PROBE_BATCH, resolve_amp
from raysweep.training.device import seed_everything
from raysweep.training.sessions import Session, TuneSession

FIGURE_MIN_TRAIN_S = 10.0  # a figure costs ~0.35 s to draw: at most ~3 % of a trial that trained this long


def draws_figures(options: dict[str, Any], trained_s: float) -> bool:
    """Whether a trial that trained ``trained_s`` seconds draws its display-only figures."""
    choice = str(options.get("figures", "auto"))
    if choice not in ("auto", "0", "1"):
        raise ValueError(f"--option figures takes auto, 1 (always) or 0 (never), got {choice!r}")
    return trained_s >= FIGURE_MIN_TRAIN_S if choice == "auto" else choice == "1"


class Task(Protocol):
    """What a study implements; the loop does the rest.

    ``train_epoch`` and ``evaluate`` together must report ``ctx.metric`` and ``ctx.stop_metric``.
    Optional: ``on_epoch_end(epoch, logger)``, called after every epoch that did not diverge
    (``epoch`` counts from 1, like the metrics' step) with the trial's ``RunLogger``, before the
    best weights are loaded for ``finish``: for artifacts logged during training (samples, ...).
    ``steps_per_epoch``: optimizer steps per epoch, honoured by ``train_epoch`` (``--dry-run`` sets
    it to a few steps to time them).
    """

    model: torch.nn.Module
    ctx: TrialContext  # the loop replaces it once, with ``amp`` resolved ("auto" -> "bf16" or "off")

    def train_epoch(self, epoch: int) -> dict[str, float]: ...  # training metrics, e.g. "train_loss"

    def evaluate(self) -> dict[str, float]: ...  # validation metrics, e.g. "val_loss"

    def state_dict(self) -> dict[str, Any]: ...  # model, optimizer, scheduler, RNG

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def finish(self, logger: RunLogger) -> dict[str, float]: ...  # test metrics, best weights loaded

    def model_spec(self) -> dict[str, Any]: ...  # {"name": ..., "config": {...}} for build_model


class OptimizerTaskState:
    """``state_dict``/``load_state_dict`` for a Task holding ``model``, ``opt``, ``sched`` and a
    ``gen`` (torch.Generator of its batch order and augmentation): all a resumed trial needs."""

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "gen": self.gen.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"])


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value > best if mode == "max" else value < best


def _non_finite(metrics: dict[str, Any]) -> dict[str, float]:
    """The reported numbers that are NaN or infinite."""
    return {k: v for k, v in metrics.items() if isinstance(v, numbers.Real) and not math.isfinite(v)}


def _required(metrics: dict[str, Any], name: str, field: str) -> float:
    if name not in metrics:
        raise KeyError(f"the task reported no {name!r} (TrialContext.{field}); it reported {sorted(metrics)}")
    return metrics[name]


def run_trial(
    make_task: Callable[[dict[str, Any], TrialContext, torch.device], Task],
    config: dict[str, Any],
    ctx: TrialContext,
    session: Session | None = None,
) -> dict[str, float]:
    """Train one configuration to the end (or early stop / divergence); returns the last metrics."""
    session = session or TuneSession()
    torch.set_num_threads(session.num_cpus())
    device = session.device(ctx.device)
    logger = RunLogger.disabled()
    key = tracking.trial_key(ctx.study, ctx.data, config, ctx.identity)
    if ctx.tracking is not None and session.rank == 0:
        logger = tracking.open_trial_run(
            ctx.tracking, session.trial_name(), key, {"raysweep.study": ctx.study, **ctx.run_tags}
        )
    try:
        last = _train(make_task, config, ctx, session, device, logger, ctx.resume_from.get(key))
    except BaseException as exc:
        if logger.ended:  # stopped after the run was closed (while reporting the last epoch)
            raise
        if session.stopped:  # Tune stopped the trial: the driver closes its run (tuner.close_runs). Writing
            raise  # here would race it, from a thread the exiting actor may cut off at any line.
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
    earlier_checkpoint: str | None = None,
) -> dict[str, float]:
    seed_everything(int(config.get("seed", 0)))
    task = make_task(config, ctx, device)
    amp, amp_reason = resolve_amp(ctx.amp, device, task.model, int(config.get("batch_size", PROBE_BATCH)),
                                  task.model_spec())  # fmt: skip
    task.ctx = ctx = replace(ctx, amp=amp)  # before the first step: every autocast sees the resolved mode
    num_params = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    options = {f"option.{k}": v for k, v in ctx.options.items()}  # runtime options leave a trace too
    logger.log_params({**config, "epochs": ctx.epochs, "data": ctx.data, "device": device.type, "amp": amp,
                       "amp_reason": amp_reason, **options}, metrics={"num_params": num_params})  # fmt: skip

    loop: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": 0, "best_stop": None, "trained_s": 0.0,
                            "stale": 0, "done": False, "last": {}}  # fmt: skip
    best_state: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        ckpt = stack.enter_context(session.checkpoint_dir())
        if ckpt is None and earlier_checkpoint:  # resumed sweep: this config's last checkpoint
            from ray import tune

            ckpt = stack.enter_context(tune.Checkpoint(earlier_checkpoint).as_directory())
        if ckpt is not None:
            saved = torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=False)
            task.load_state_dict(saved["task"])
            loop = saved["loop"]
            if "best_val_loss" in loop:  # a checkpoint written before the stopping metric was configurable
                loop["best_stop"] = loop.pop("best_val_loss")
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
        loop["trained_s"] = loop.get("trained_s", 0.0) + metrics["epoch_time_s"]
        bad = _non_finite(metrics)
        if bad:
            what = "loss" if all(k.endswith("loss") for k in bad) else "metric"
            reason = f"non-finite {what} at epoch {epoch + 1} ({', '.join(f'{k} {v}' for k, v in bad.items())})"
            metrics = {k: v for k, v in metrics.items() if k not in bad}
            metrics["diverged"] = 1.0
            logger.log_metrics(metrics, step=epoch + 1, tags={OUTCOME_TAG: "diverged", REASON_TAG: reason})
            logger.end("FAILED")
            session.report(metrics, None)
            return metrics
        on_epoch_end = getattr(task, "on_epoch_end", None)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, logger)
        score, stop = _required(metrics, metric, "metric"), _required(metrics, ctx.stop_metric, "stop_metric")
        if _better(score, loop["best"], ctx.mode):
            loop["best"], loop["best_epoch"] = score, epoch + 1
            best_state = _cpu_copy(task.model.state_dict())
        if _better(stop, loop["best_stop"], ctx.stop_mode):
            loop["best_stop"], loop["stale"] = stop, 0
        else:
            loop["stale"] += 1
        early = loop["stale"] >= ctx.patience
        last_epoch = early or epoch + 1 == ctx.epochs
        metrics[f"best_{metric}"] = loop["best"]
        metrics["best_epoch"] = loop["best_epoch"]
        if last_epoch:
            task.model.load_state_dict(best_state)
            logger.figures = draws_figures(ctx.options, loop["trained_s"])
            final = task.finish(logger)
            metrics.update(final)
            logger.log_torch_state(best_state, "model/best.pt")
            logger.log_dict(task.model_spec(), "model/spec.json")
        loop.update(epoch=epoch + 1, done=last_epoch, last=metrics)
        outcome = "early_stopped" if early and epoch + 1 < ctx.epochs else "completed"
        logger.log_metrics(metrics, step=epoch + 1, tags={OUTCOME_TAG: outcome} if last_epoch else None)
        with tempfile.TemporaryDirectory(prefix="raysweep-ckpt-") as tmp:
            torch.save({"task": task.state_dict(), "loop": loop}, Path(tmp) / "state.pt")
            torch.save(best_state, Path(tmp) / "best_model.pt")
            if last_epoch:
                logger.end("FINISHED")
            session.report(metrics, tmp)
        if last_epoch:
            break
    return loop["last"]
