"""airbench94's pieces for the configurable CNN (``widths``, ``activation``, ``whiten``).

Why here: they are the recipe choices of airbench94 (Keller Jordan's 94 % CIFAR-10 net) within the
report's conv/BN/activation/pool family, kept beside ``cnn.py`` so that the report's net stays short.

- ``conv_groups``: per stage, conv3x3 -> 2x2 max-pool -> BN -> act -> conv3x3 -> BN -> act (pooling
  inside the group, so every stage halves the map), BN with its weight frozen at 1 (only the bias
  trains), eps 1e-12 and running statistics that move 40 % a step, convs identity-initialised on
  their first ``c_in`` output channels (an implicit residual). Each conv is a block named ``conv_i``.
- ``whitening_stem``: a 2x2 conv (no padding: 32x32 -> 31x31) whose weights are the whitening
  directions of 2x2 patches of training images and their negatives, frozen; its bias trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True), "gelu": nn.GELU}
WHITEN_KERNEL = 2  # side of the whitened patches (px)
WHITEN_EPS = 5e-4  # added to each patch-covariance eigenvalue before its inverse square root (airbench's)
LOGIT_SCALE = 1 / 9  # airbench multiplies the logits of its bias-free linear head by this
BN_MOMENTUM = 0.4  # share of a batch's statistics in the running ones (airbench: 0.6 kept)


def activation(name: str) -> nn.Module:
    """A fresh activation module: relu or gelu."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def whiten_channels(in_channels: int) -> int:
    """Output channels of the whitening stem: every patch direction and its negative."""
    return 2 * in_channels * WHITEN_KERNEL**2


def whitening_stem(in_channels: int, act: str) -> nn.Sequential:
    """2x2 conv (weights frozen until ``init_whitening``; bias trains, starts at 0) then the activation."""
    conv = nn.Conv2d(in_channels, whiten_channels(in_channels), WHITEN_KERNEL, padding=0, bias=True)
    conv.weight.requires_grad_(False)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, activation(act))


@torch.no_grad()
def whitening_weights(images: torch.Tensor, eps: float = WHITEN_EPS, chunk: int = 500) -> torch.Tensor:
    """(N, C, H, W) normalized images -> (2 C k^2, C, k, k) conv weights, k = WHITEN_KERNEL.

    The first C k^2 filters project a patch on the eigenvectors of the patches' (uncentred)
    covariance, largest first, divided by sqrt(eigenvalue + eps): on these images their outputs have
    ~identity covariance. The rest are their negatives, so that a ReLU/GELU after keeps both signs."""
    c, k = images.shape[1], WHITEN_KERNEL
    cov = torch.zeros(c * k * k, c * k * k, dtype=torch.float64)
    n = 0
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].double()
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, H-k+1, W-k+1, k, k)
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)  # (B*(H-k+1)*(W-k+1), C*k*k)
        cov += flat.T @ flat
        n += len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov / n)  # ascending; eigenvectors in columns
    scaled = eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]  # (C*k*k, C*k*k): a direction per row
    filters = scaled.flip(0).reshape(c * k * k, c, k, k).float()  # largest first, in the conv weight's layout
    return torch.cat([filters, -filters])


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)  # stays 1: only the bias (shift) trains
    return bn


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:c_in])  # output channel i starts as a copy of input channel i
    return conv


def conv_groups(c_in: int, widths: Sequence[int], act: str) -> list[tuple[str, nn.Module]]:
    """``conv_0``, ``conv_1``, ...: two conv blocks per stage, the first pooling 2x2 after its conv."""
    blocks: list[tuple[str, nn.Module]] = []
    for s, width in enumerate(widths):
        blocks.append((f"conv_{2 * s}", nn.Sequential(_conv(c_in, width), nn.MaxPool2d(2), _batchnorm(width),
                                                      activation(act))))  # fmt: skip
        blocks.append((f"conv_{2 * s + 1}", nn.Sequential(_conv(width, width), _batchnorm(width), activation(act))))
        c_in = width
    return blocks


class Scale(nn.Module):
    """Multiplies its input by a constant (the logits' temperature)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def group_head(c_in: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Global max-pool (airbench's MaxPool2d(3) over its 3x3 map, for any map size) -> dropout ->
    bias-free linear -> logits x LOGIT_SCALE."""
    return nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(c_in, num_classes, bias=False), Scale(LOGIT_SCALE))  # fmt: skip
