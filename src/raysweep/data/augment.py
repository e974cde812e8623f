"""Batched image augmentation as tensor ops on the training device.

Why: per-sample PIL transforms in DataLoader workers are the usual bottleneck of small-image
training; one gather over the whole batch does random-crop-with-padding and flip together.
``crop_flip_normalize`` does it on the uint8 batch and normalizes in the same pass: a handful of
kernels per batch, whatever the batch size (each kernel is a parallel region: on a busy 2-core
machine fewer of them matter more than their size).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with x_u8 * scale + shift = (x_u8 / 255 - mean) / std, per channel (last dim)."""
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(std, dtype=torch.float32)
    return (1.0 / (255.0 * s)).to(device), (-m / s).to(device)


def to_float(images_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float, normalized per channel (channels_last memory)."""
    scale, shift = _affine(tuple(mean), tuple(std), images_u8.device)
    return torch.addcmul(shift, images_u8.float(), scale).permute(0, 3, 1, 2)  # (B, C, H, W)


FILLS = ("zero", "reflect")  # what a crop sees beyond the image: the mean colour, or the image mirrored at its edge


def _check_fill(fill: str, pad: int, side: int) -> None:
    """ValueError unless ``fill`` is known and, for reflect, ``pad`` < the image's shorter ``side``."""
    if fill not in FILLS or (fill == "reflect" and not pad < side):
        raise ValueError(f"fill must be one of {', '.join(FILLS)} (reflect: pad < image side), got {fill!r}, pad {pad}")


def _pad(x: torch.Tensor, pad: int, fill: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + 2 pad, W + 2 pad), filled with zeros or the reflected image."""
    _check_fill(fill, pad, min(x.shape[-2:]))
    return F.pad(x, (pad,) * 4, mode="reflect" if fill == "reflect" and pad else "constant")


def crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None,
              fill: str = "zero") -> torch.Tensor:  # fmt: skip
    """Random crop of each image from a copy padded ``pad`` px (zeros, or reflected: ``fill``), and a
    horizontal flip with p = 0.5.

    x: (B, C, H, W) on any device. One advanced-indexing gather per batch; labels are unchanged.
    """
    b, _, h, w = x.shape
    dev = x.device
    padded = _pad(x, pad, fill)  # (B, C, H + 2p, W + 2p)
    oy, ox, flip = _draw(b, pad, generator, dev)
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h  # (B, H)
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1 - ar_w), ox[:, None] + ar_w)  # (B, W)
    bidx = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def shifted(x: torch.Tensor, d: int, fill: str = "zero") -> torch.Tensor:
    """x (B, C, H, W) moved ``d`` px down and right (up and left if negative), zeros (or the reflected
    image: ``fill``) shifted in: one of the crops training draws from its padding, for test-time averaging."""
    h, w, p = x.shape[2], x.shape[3], abs(d)
    return _pad(x, p, fill)[:, :, p - d : p - d + h, p - d : p - d + w]  # (B, C, H, W)


def crop_flip_normalize(images_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 4,
                        generator: torch.Generator | None = None,
                        flip: torch.Tensor | None = None, fill: str = "zero") -> torch.Tensor:  # fmt: skip
    """``crop_flip(to_float(images_u8, mean, std), pad, generator, fill)`` in one gather and one normalize.

    images_u8: (B, H, W, C) uint8 on any device -> (B, C, H, W) float, channels_last memory. The same
    random draws as ``crop_flip`` for the same generator state, and the same result: pixels from the
    zero padding are 0 after normalization (the mean colour), exactly as when padding the normalized batch;
    reflected padding gathers the mirrored source pixel instead.
    ``flip``: (B,) bool, which images to mirror (alternating flips) instead of the drawn flips; the
    draws are the same either way (same crops, same generator state after), and an image's mirrored
    crop is its unmirrored one flipped.
    """
    b, h, w, c = images_u8.shape
    dev = images_u8.device
    _check_fill(fill, pad, min(h, w))
    oy, ox, drawn = _draw(b, pad, generator, dev)
    flip = drawn if flip is None else flip.to(dev)
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h - pad  # (B, H) source row of each output row; outside [0, H) is padding
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1 - ar_w), ox[:, None] + ar_w) - pad  # (B, W)
    if fill == "reflect":  # -1 -> 1, h -> h - 2: mirrored at the edge pixel, as F.pad's "reflect"
        rows = torch.where(rows < 0, -rows, torch.where(rows >= h, 2 * (h - 1) - rows, rows))
        cols = torch.where(cols < 0, -cols, torch.where(cols >= w, 2 * (w - 1) - cols, cols))
    pixel = (torch.arange(b, device=dev)[:, None, None] * (h * w)
             + rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :])  # (B, H, W)  # fmt: skip
    out = images_u8.reshape(b * h * w, c).index_select(0, pixel.reshape(-1)).view(b, h, w, c)  # (B, H, W, C)
    scale, shift = _affine(tuple(mean), tuple(std), dev)
    x = torch.addcmul(shift, out.float(), scale)  # (B, H, W, C)
    if fill == "zero":  # padding pixels (gathered from the clamped edge) become 0
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
        x.mul_(inside.unsqueeze(-1))
    return x.permute(0, 3, 1, 2)  # (B, C, H, W), channels_last memory


def _draw(b: int, pad: int, generator: torch.Generator | None, dev: torch.device) -> tuple[torch.Tensor, ...]:
    """Per-image crop offsets (oy, ox) in [0, 2 pad] and flips, drawn on the CPU, moved in one copy."""
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu")
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu")
    flip = torch.rand(b, generator=generator, device="cpu") < 0.5
    if dev.type == "cpu":
        return oy, ox, flip
    oy, ox, flip = torch.stack([oy, ox, flip.long()]).to(dev, non_blocking=True)
    return oy, ox, flip.bool()
