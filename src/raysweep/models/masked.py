"""Shared pieces of the PixelRNN-paper models (van den Oord et al., 2016): masked convolutions,
the output head, the 256-way loss, the autoregressive sampler and its image grid.

Ordering. Sub-pixels are generated in raster order over pixels and R, G, B within a pixel, so
the distribution of sub-pixel (c, h, w) may depend on every pixel above row h, every pixel left of
column w in row h, and channels < c of pixel (h, w) itself -- nothing else.

Channel groups. Every feature map's channels are split into three contiguous groups R, G, B
(channel i of n is in group ``3 * i // n``; the three image channels are groups 0, 1, 2). A
feature in group g at pixel (h, w) may depend on image sub-pixels (c, h, w) with c < g only (and
on all strictly earlier pixels). Masked convolutions keep that invariant:

- spatially, a k_h x k_w kernel keeps the rows above its centre and, in the centre row, the
  columns left of the centre; everything below / right of the centre is zero;
- at the centre tap, output group g sees input groups < g (mask ``"A"``, first layer only, where
  the input is the image itself) or <= g (mask ``"B"``, every later layer).

Kernel rows below the centre are always masked, so ``MaskedConv2d`` stores only the rows down to
the centre and pads the top: no FLOPs are spent on taps that are always zero.

Output head (all three models): ReLU -> mask-B 1x1 conv to ``head_channels`` -> ReLU -> mask-B 1x1
conv to 3 * 256 channels. Output channel group g is sub-pixel g's 256 logits, so the head returns
(B, 256, 3, H, W): a 256-way softmax per sub-pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_LEVELS = 256  # intensity values per sub-pixel (8-bit images)
NUM_COLORS = 3  # R, G, B: sub-pixels per pixel, and the number of channel groups

__all__ = [
    "NUM_LEVELS",
    "NUM_COLORS",
    "channel_groups",
    "causal_mask",
    "MaskedConv2d",
    "PixelHead",
    "normalize",
    "to_targets",
    "levels_to_pixels",
    "nll_loss",
    "sample",
    "sample_grid",
]


def channel_groups(n: int) -> torch.Tensor:
    """Colour group (0 = R, 1 = G, 2 = B) of each of ``n`` channels: three contiguous blocks."""
    if n < NUM_COLORS:
        raise ValueError(f"need at least {NUM_COLORS} channels for the R/G/B groups, got {n}")
    return torch.arange(n) * NUM_COLORS // n


def causal_mask(
    out_groups: torch.Tensor,
    in_groups: torch.Tensor,
    kernel_size: tuple[int, int],
    mask_type: str,
) -> torch.Tensor:
    """(out, in, rows, k_w) 0/1 mask; rows = k_h // 2 + 1 (the kept rows, centre row last).

    ``out_groups`` / ``in_groups`` give each channel's colour group; see the module docstring.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    k_h, k_w = kernel_size
    if k_h % 2 == 0 or k_w % 2 == 0:
        raise ValueError(f"masked kernels need odd sizes, got {kernel_size}")
    c_h, c_w = k_h // 2, k_w // 2
    mask = torch.zeros(len(out_groups), len(in_groups), c_h + 1, k_w)
    mask[:, :, :c_h, :] = 1.0  # rows above the centre
    mask[:, :, c_h, :c_w] = 1.0  # centre row, left of the centre
    if mask_type == "A":
        centre = out_groups[:, None] > in_groups[None, :]  # (out, in): strictly earlier colours
    else:
        centre = out_groups[:, None] >= in_groups[None, :]  # (out, in): earlier or same colour
    mask[:, :, c_h, c_w] = centre.float()
    return mask


class MaskedConv2d(nn.Module):
    """Convolution with a causal mask (a buffer, multiplied into the weight on every call).

    "Same" output size. Only kernel rows down to the centre are stored and computed (the rest
    would always be masked): the input is padded by k_h // 2 rows on top only.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str,
        bias: bool = True,
        in_groups: torch.Tensor | None = None,  # colour group per input channel; default blocks
        out_groups: torch.Tensor | None = None,  # colour group per output channel; default blocks
    ) -> None:
        super().__init__()
        k_h, k_w = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        in_groups = channel_groups(in_channels) if in_groups is None else in_groups
        out_groups = channel_groups(out_channels) if out_groups is None else out_groups
        if len(in_groups) != in_channels or len(out_groups) != out_channels:
            raise ValueError("one colour group per channel is needed")
        mask = causal_mask(out_groups, in_groups, (k_h, k_w), mask_type)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.mask_type = (k_h, k_w), mask_type
        self.pad_h, self.pad_w = k_h // 2, k_w // 2
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config
        self.weight = nn.Parameter(torch.empty_like(mask))  # (out, in, k_h // 2 + 1, k_w)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # PyTorch's default conv init (uniform, bound 1 / sqrt(fan_in)), with the fan-in counted
        # over unmasked taps only, so masking does not shrink the activations layer by layer.
        fan_in = mask.sum(dim=(1, 2, 3)).clamp(min=1.0)  # (out,)
        bound = (1.0 / fan_in.sqrt()).view(-1, 1, 1, 1)  # (out, 1, 1, 1)
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).mul_(bound)
            if self.bias is not None:
                self.bias.uniform_(-1.0, 1.0).mul_(bound.view(-1))

    def masked_weight(self) -> torch.Tensor:
        """The weight with the mask applied, (out, in, k_h // 2 + 1, k_w): what forward uses."""
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W)."""
        w = self.masked_weight()
        if self.pad_h == 0 and self.pad_w == 0:
            return F.conv2d(x, w, self.bias)
        # Symmetric padding pads pad_h rows at the bottom too; the extra pad_h output rows at the
        # bottom come from them and are dropped, leaving output row r = kept kernel rows over
        # input rows r - pad_h .. r.
        y = F.conv2d(x, w, self.bias, padding=(self.pad_h, self.pad_w))  # (B, out, H + pad_h, W)
        return y[:, :, : x.shape[2]] if self.pad_h else y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"mask_type={self.mask_type!r}, bias={self.bias is not None}"
        )


class PixelHead(nn.Module):
    """ReLU -> mask-B 1x1 -> ReLU -> mask-B 1x1 to 3 x 256 logits, as (B, 256, 3, H, W)."""

    def __init__(self, in_channels: int, head_channels: int) -> None:
        super().__init__()
        self.hidden = MaskedConv2d(in_channels, head_channels, 1, "B")
        self.out = MaskedConv2d(head_channels, NUM_COLORS * NUM_LEVELS, 1, "B")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features -> (B, 256, 3, H, W) logits."""
        y = self.out(F.relu(self.hidden(F.relu(x))))  # (B, 3 * 256, H, W), colour-major
        b, _, h, w = y.shape
        y = y.view(b, NUM_COLORS, NUM_LEVELS, h, w)  # (B, 3, 256, H, W)
        return y.transpose(1, 2)  # (B, 256, 3, H, W)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 1] -> [-1, 1], the models' input scale."""
    return x * 2.0 - 1.0


def to_targets(x: torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 1] -> integer intensities 0..255 (int64), the classes of the softmax."""
    return (x * (NUM_LEVELS - 1)).round().clamp(0, NUM_LEVELS - 1).long()


def levels_to_pixels(levels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer intensities 0..255 -> model input values in [0, 1] (the inverse of to_targets)."""
    return levels.to(dtype) / (NUM_LEVELS - 1)


def nll_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood in nats per sub-pixel: the training loss.

    ``logits`` (B, 256, 3, H, W), ``x`` (B, 3, H, W) in [0, 1]. Computed in float32 even under
    autocast, since a bf16 log-softmax over 256 classes loses the small differences that matter.
    """
    return F.cross_entropy(logits.float(), to_targets(x))


@torch.no_grad()
def sample(
    model: nn.Module,
    n: int,
    size: int | tuple[int, int],
    device: torch.device | str | None = None,
    seed: int | None = 0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` images sub-pixel by sub-pixel (raster order, R then G then B): (n, 3, H, W) uint8.

    One forward per sub-pixel (3 * H * W in all); the forward for row h runs on rows 0..h only,
    which by causality gives the same logits and halves the cost. ``temperature`` divides the
    logits (< 1: sharper). Deterministic given ``seed`` (or a ``generator``, which then wins);
    ``device`` defaults to the model's. The model is put in eval mode and restored afterwards.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    height, width = (size, size) if isinstance(size, int) else size
    param = next(model.parameters(), None)
    if device is None:
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    # Feed the model its own float dtype (e.g. float64 in tests); autocast handles bf16 runs.
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(0 if seed is None else int(seed))
    was_training = model.training
    model.eval()
    try:
        levels = torch.zeros(n, NUM_COLORS, height, width, dtype=torch.long, device=device)
        canvas = torch.zeros(n, NUM_COLORS, height, width, dtype=dtype, device=device)  # in [0, 1]
        for h in range(height):
            for w in range(width):
                for c in range(NUM_COLORS):
                    logits = model(canvas[:, :, : h + 1])  # (n, 256, 3, h + 1, W)
                    scaled = logits[:, :, c, h, w].float() / temperature  # (n, 256)
                    probs = F.softmax(scaled, dim=1)
                    draw = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
                    levels[:, c, h, w] = draw
                    canvas[:, c, h, w] = levels_to_pixels(draw, dtype)
    finally:
        model.train(was_training)
    return levels.to(torch.uint8)


def sample_grid(
    images: torch.Tensor | np.ndarray, ncols: int | None = None, pad: int = 2
) -> np.ndarray:
    """(n, 3, H, W) uint8 images -> one (rows * (H + pad) + pad, ..., 3) uint8 grid for a PNG.

    ``torchvision.utils.make_grid``: ``ncols`` (at most n) defaults to ceil(sqrt(n)); the
    ``pad``-pixel separators and empty cells are black; a single image comes back as it is.
    """
    from torchvision.utils import make_grid  # lazy: only a trial's end and tests draw grids

    t = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if t.ndim != 4 or t.shape[1] != NUM_COLORS:
        raise ValueError(f"expected (n, 3, H, W) images, got shape {tuple(t.shape)}")
    ncols = max(1, ncols or math.ceil(math.sqrt(len(t))))
    grid = make_grid(t.to(torch.uint8), nrow=ncols, padding=pad)  # (3, rows * (H + pad) + pad, ...)
    return grid.permute(1, 2, 0).numpy()  # (H', W', 3)


class PixelModel(nn.Module):
    """The skeleton the three PixelRNN-paper models share: a mask-A input convolution, a stack of
    residual layers that keep the channel groups' causality, and the masked 1x1 head.

    (B, 3, H, W) pixel values in [0, 1] -> (B, 256, 3, H, W) logits. A model passes its depth and
    ``make_layer(channels) -> nn.Module``; everything else is here.
    """

    def __init__(
        self,
        channels: int,  # 2h: features between layers
        depth: int,  # number of residual layers
        head_channels: int,  # features of the hidden 1x1 output layer
        first_kernel_size: int,  # odd; the mask-A input conv
        make_layer: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        channels, depth, head_channels = int(channels), int(depth), int(head_channels)
        if channels % 2 or channels // 2 < NUM_COLORS:
            raise ValueError(f"channels must be even and >= {2 * NUM_COLORS}, got {channels}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if head_channels < NUM_COLORS:
            raise ValueError(f"head_channels must be >= {NUM_COLORS}, got {head_channels}")
        self.input = MaskedConv2d(NUM_COLORS, channels, int(first_kernel_size), "A")
        self.layers = nn.ModuleList(make_layer(channels) for _ in range(depth))
        self.head = PixelHead(channels, head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixel values in [0, 1] -> (B, 256, 3, H, W) logits."""
        h = self.input(normalize(x))  # (B, 2h, H, W)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)

    def example_input(self, batch: int = 2, size: int = 8) -> torch.Tensor:
        """A valid input for the registry-wide test: random pixel values."""
        return torch.randint(0, 256, (batch, 3, size, size)).float() / 255.0
