"""Fast, scripted trainables for sweep-level tests (imported by Ray workers too)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from raysweep.training import LocalSession, TrialContext, run_trial


class ScriptedTask:
    """A task whose losses follow from the config: lr >= 1 diverges at epoch 2, more filters
    score better. ``ctx.options``: ``epoch_s`` sleeps per epoch, ``crash_dir`` makes the worker
    process die once at the start of epoch 2 (a marker file remembers it crashed), ``slow_filters``:
    the trial with that many filters sleeps 4x as long, ``hold_file``:
    until that file exists the trial does not start its last epoch (after it, no more sleeping);
    ``barrier_dir``/``barrier_n``: no trial trains its first epoch before ``barrier_n`` have started."""

    def __init__(self, config: dict[str, Any], ctx: TrialContext, device: torch.device) -> None:
        self.model = torch.nn.Linear(2, 2)
        self.config, self.ctx = config, ctx
        self.epoch = 0

    def _loss(self, epoch: int) -> float:
        if self.config["lr"] >= 1.0 and epoch >= 1:
            return float("nan")
        return 1.0 / (1 + epoch) + 1.0 / self.config["filters"]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        crash_dir = self.ctx.options.get("crash_dir")
        if crash_dir and epoch == 1:
            marker = Path(crash_dir) / f"crashed-{self.config['filters']}"
            if not marker.exists():
                marker.touch()
                os._exit(1)  # the worker process dies mid-trial
        barrier = self.ctx.options.get("barrier_dir")
        if barrier and epoch == 0:  # all trials of the sweep at once: each waits for the others
            (Path(barrier) / f"{os.getpid()}-{self.config}").touch()
            deadline = time.time() + 300  # a trial that never starts fails the test, not hangs it
            while (started := len(list(Path(barrier).iterdir()))) < int(self.ctx.options["barrier_n"]):
                if time.time() > deadline:
                    raise RuntimeError(f"barrier: {started} of {self.ctx.options['barrier_n']} trials started")
                time.sleep(0.1)
        hold = self.ctx.options.get("hold_file")
        if not hold or not Path(hold).exists():
            slow = 4 if self.config["filters"] == self.ctx.options.get("slow_filters") else 1
            time.sleep(slow * float(self.ctx.options.get("epoch_s", 0.0)))
        while hold and epoch + 1 == self.ctx.epochs and not Path(hold).exists():
            time.sleep(0.2)
        return {"train_loss": self._loss(epoch), "train_acc": 0.5, "threads": torch.get_num_threads()}

    def evaluate(self) -> dict[str, float]:
        loss = self._loss(self.epoch) + 0.05
        return {"val_loss": loss, "val_acc": 1.0 / (1.0 + loss) if loss == loss else 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def finish(self, logger: Any) -> dict[str, float]:
        return {"test_acc": self.evaluate()["val_acc"]}

    def model_spec(self) -> dict[str, Any]:
        return {"name": "none", "config": {}}


def scripted_trainable(config: dict[str, Any], ctx: TrialContext) -> None:
    run_trial(ScriptedTask, config, ctx)


class Stop(Exception):
    """Raised by ``StopAfterFirstReport``: stands for a trial killed after its first epoch."""


class StopAfterFirstReport(LocalSession):
    """A session that keeps the first epoch's report and checkpoint, then stops the trial."""

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        super().report(metrics, checkpoint_dir)
        raise Stop


def recording_layers(make_task: Any, seen: list[tuple[bool, str, torch.dtype]], tasks: list[Any]) -> Any:
    """``make_task`` whose model appends (grad enabled, layer, output dtype) to ``seen`` for every call of a
    Conv2d, Linear or LSTM layer, and whose tasks land in ``tasks``: for tests of what computes in bf16."""

    def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
        out = out[0] if isinstance(out, tuple) else out
        seen.append((torch.is_grad_enabled(), type(module).__name__, out.dtype))

    def make(config: dict[str, Any], ctx: TrialContext, device: torch.device) -> Any:
        task = make_task(config, ctx, device)
        for m in task.model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.LSTM)):
                m.register_forward_hook(hook)
        tasks.append(task)
        return task

    return make
