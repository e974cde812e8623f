"""airbench94's training recipe pieces for the CNN study: BatchNorm-bias learning-rate scaling
(``bn_bias_scale``), Lookahead of the weights (``ema``), and the build arguments of the net.

Why Lookahead rather than a shadow EMA: the net itself holds the average at each epoch's end, so
validation, the best-weights checkpoint and the test all see it with no second copy of the model to
save and restore; and at an epoch's start the average is just the weights (nothing to checkpoint).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from raysweep.models.cnn import DROPOUT
from raysweep.search_spaces.cnn import check_net

LOOKAHEAD_EVERY = 5  # optimizer steps between two pulls of the weights to their average (airbench's)
LOOKAHEAD_WARMUP_POWER = 3.0  # the decay ramps up as (step / steps) ** this: fast moves early, strong averaging late


def net_config(config: dict[str, Any]) -> dict[str, Any]:
    """``build_model("cnn", ...)`` arguments of a configuration. Hyperparameters at their defaults add
    no key, so the report's nets keep the spec (and the keys derived from it) they always had."""
    widths = check_net(config)
    dropout = float(config.get("dropout", DROPOUT))
    if widths:
        spec: dict[str, Any] = {"widths": list(widths), "dropout": dropout}
    else:
        spec = {"filters": int(config.get("filters")), "layers": int(config.get("layers")), "dropout": dropout}
    if config.get("activation", "relu") != "relu":
        spec["activation"] = str(config.get("activation"))
    if int(config.get("whiten", 0)):
        spec["whiten"] = True
    return spec


def param_groups(model: nn.Module, lr: float, weight_decay: float, bn_bias_scale: float) -> list[Any]:
    """The trainable parameters; with ``bn_bias_scale`` != 1, the BatchNorm biases in a group of their
    own at ``lr * bn_bias_scale`` and ``weight_decay / bn_bias_scale`` (the same decay per step:
    torch's decay step is lr x weight_decay x w), the rest at the optimizer's defaults."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen whitening / BN weights left out
    if bn_bias_scale == 1:
        return params
    biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine}
    return [{"params": [p for p in params if id(p) not in biases]},  # first: its lr is the one reported
            {"params": [p for p in params if id(p) in biases], "lr": lr * bn_bias_scale,
             "weight_decay": weight_decay / bn_bias_scale}]  # fmt: skip


class Lookahead:
    """airbench94's Lookahead: every LOOKAHEAD_EVERY steps the running average of the weights (all
    floating-point state: BatchNorm statistics too) moves towards them with decay
    ``decay ** LOOKAHEAD_EVERY * (step / total_steps) ** LOOKAHEAD_WARMUP_POWER``, and the net is set
    to the average; ``finish`` sets it to the average at an epoch's end."""

    def __init__(self, model: nn.Module, decay: float, total_steps: int) -> None:
        self.model, self.decay, self.total_steps = model, decay, max(1, total_steps)
        self.average: list[torch.Tensor] = []
        self.live: list[torch.Tensor] = []  # the net's own tensors (state_dict shares their storage)

    @torch.no_grad()
    def start(self) -> None:
        """At an epoch's start the average is the weights (``finish`` made them equal)."""
        self.live = [v for v in self.model.state_dict().values() if v.is_floating_point()]
        self.average = [v.clone() for v in self.live]

    @torch.no_grad()
    def step(self, step: int) -> None:
        """After optimizer step ``step`` (counted from 1 over the whole training)."""
        if step % LOOKAHEAD_EVERY == 0:
            rho = self.decay**LOOKAHEAD_EVERY * (step / self.total_steps) ** LOOKAHEAD_WARMUP_POWER
            self._pull(rho)

    def finish(self) -> None:
        self._pull(1.0)

    @torch.no_grad()
    def _pull(self, rho: float) -> None:
        for avg, value in zip(self.average, self.live, strict=True):
            avg.lerp_(value, 1.0 - rho)  # avg = rho avg + (1 - rho) value
            value.copy_(avg)
