"""The tiny study's Task: two Gaussian blobs, classified; run by the shared loop."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from raysweep.models import build_model
from raysweep.training import OptimizerTaskState, TrialContext, run_trial
from tiny_study import model as _model  # noqa: F401  (registers tiny_mlp)


def data(source: str | None) -> tuple[str, str]:
    """Only synthetic data: (source, content hash)."""
    return "synthetic", "tiny-blobs-v1"


def _blobs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 2, generator=gen) * 0.7 + (y[:, None] * 2.0 - 1.0)
    return x, y


class TinyTask(OptimizerTaskState):
    def __init__(self, config: dict[str, Any], ctx: TrialContext, device: torch.device) -> None:
        self.config, self.ctx = config, ctx
        self.model = build_model("tiny_mlp", hidden=int(config["hidden"]))
        self.gen = torch.Generator().manual_seed(int(config["seed"]))
        self.train_x, self.train_y = _blobs(512, torch.Generator().manual_seed(1))
        self.val_x, self.val_y = _blobs(256, torch.Generator().manual_seed(2))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=float(config["lr"]))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: 1.0)
        self.steps_per_epoch = len(self.train_x) // 64

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        order = torch.randperm(len(self.train_x), generator=self.gen)
        total = 0.0
        for step, idx in enumerate(order.split(64)):
            if step == self.steps_per_epoch:
                break
            loss = F.cross_entropy(self.model(self.train_x[idx]), self.train_y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss) * len(idx)
        return {"train_loss": total / max(1, min(len(self.train_x), 64 * self.steps_per_epoch))}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        logits = self.model(self.val_x)
        return {"val_loss": float(F.cross_entropy(logits, self.val_y)),
                "val_acc": float((logits.argmax(1) == self.val_y).float().mean())}  # fmt: skip

    def finish(self, logger: Any) -> dict[str, float]:
        return {"test_acc": self.evaluate()["val_acc"]}

    def model_spec(self) -> dict[str, Any]:
        return {"name": "tiny_mlp", "config": {"hidden": int(self.config["hidden"])}}


def train_tiny(config: dict[str, Any], ctx: TrialContext) -> None:
    run_trial(TinyTask, config, ctx)
