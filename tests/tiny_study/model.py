"""The tiny study's model: a one-hidden-layer MLP on 2-D points."""

from __future__ import annotations

import torch
from torch import nn

from raysweep.models import register


@register("tiny_mlp")
class TinyMLP(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def example_input(self, batch: int = 2) -> torch.Tensor:
        return torch.randn(batch, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2) -> (B, 2) logits
        return self.net(x)
