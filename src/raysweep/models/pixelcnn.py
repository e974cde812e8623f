"""PixelCNN of the PixelRNN paper (van den Oord et al., 2016, Sec. 3.4 and Table 1), study
``pixelcnn``.

Architecture, for ``channels`` = 2h and ``blocks`` = L:

- input: (B, 3, H, W) in [0, 1], scaled to [-1, 1]; 7x7 mask-A conv, 3 -> 2h channels;
- L residual blocks (the paper's Fig. 5): ReLU -> mask-B 1x1 conv 2h -> h -> ReLU -> mask-B 3x3
  conv h -> h -> ReLU -> mask-B 1x1 conv h -> 2h, added to the block's input;
- head: ReLU -> mask-B 1x1 conv 2h -> ``head_channels`` -> ReLU -> mask-B 1x1 conv to 3 x 256
  logits, returned as (B, 256, 3, H, W).

No pooling, padding keeps H x W, so any image size works. The paper's CIFAR-10 model has h = 128,
L = 15 and 1024 head channels; the defaults here are CPU-sized. Like the paper's PixelCNN, the
receptive field is a stack of masked kernels and so has a blind spot up and to the right; only the
two LSTM models see the whole causal context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.models import register
from raysweep.models.masked import MaskedConv2d, PixelModel


class ResidualBlock(nn.Module):
    """The paper's bottleneck block: 1x1 down to h, masked k x k, 1x1 back up to 2h, plus input."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        hidden = channels // 2
        self.down = MaskedConv2d(channels, hidden, 1, "B")
        self.conv = MaskedConv2d(hidden, hidden, kernel_size, "B")
        self.up = MaskedConv2d(hidden, channels, 1, "B")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2h, H, W) -> (B, 2h, H, W)."""
        y = self.down(F.relu(x))  # (B, h, H, W)
        y = self.conv(F.relu(y))  # (B, h, H, W)
        return x + self.up(F.relu(y))


@register("pixelcnn")
class PixelCNN(PixelModel):
    """7x7 mask-A conv, residual blocks of masked 3x3 convs, 1x1 masked head to 256-way logits."""

    def __init__(
        self,
        channels: int = 96,  # 2h: features of the residual stream (bottleneck convs use h)
        blocks: int = 6,  # residual blocks (paper: 15)
        head_channels: int = 192,  # features of the hidden 1x1 output layer (paper: 1024)
        kernel_size: int = 3,  # odd; masked conv inside each residual block
        first_kernel_size: int = 7,  # odd; the mask-A input conv
    ) -> None:
        kernel_size = int(kernel_size)
        super().__init__(channels, blocks, head_channels, first_kernel_size,
                         lambda c: ResidualBlock(c, kernel_size))  # fmt: skip
