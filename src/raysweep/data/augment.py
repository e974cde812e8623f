"""Batched image augmentation as tensor ops on the training device.

Why: per-sample PIL transforms in DataLoader workers are the usual bottleneck of small-image
training; one gather over the whole batch does random-crop-with-padding and flip together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float(images_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float, normalized per channel."""
    x = images_u8.permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of each image from a zero-padded copy, and a horizontal flip with p = 0.5.

    x: (B, C, H, W) on any device. One advanced-indexing gather per batch; labels are unchanged.
    """
    b, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(dev)
    flip = torch.rand(b, generator=generator, device="cpu").to(dev) < 0.5
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h  # (B, H)
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1 - ar_w), ox[:, None] + ar_w)  # (B, W)
    bidx = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
