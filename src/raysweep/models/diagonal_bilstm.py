"""Diagonal BiLSTM of the PixelRNN paper (van den Oord et al., 2016, Sec. 3.2 and Table 1), study
``diagonal_bilstm``.

Architecture, for ``channels`` = 2h and ``layers`` = L:

- input: (B, 3, H, W) in [0, 1], scaled to [-1, 1]; 7x7 mask-A conv, 3 -> 2h channels;
- L Diagonal BiLSTM layers, each with a residual connection. A layer runs two LSTMs, each with
  h hidden units and its own weights:
  - input-to-state: a mask-B 1x1 conv, 2h -> 4h gates (i, f, o, g) per direction, for the whole
    map at once; the right-to-left direction works on the horizontally mirrored map;
  - skew: row r is shifted right by r, (H, W) -> (H, W + H - 1), so each diagonal becomes a
    column; the LSTM then walks the columns left to right, all rows of a column in parallel;
  - state-to-state: a 2x1 conv (no bias) over the previous column's hidden state, i.e. the states
    of the pixel above and the pixel to the left (in the direction's own frame);
  - c = sigma(f) * c_prev + sigma(i) * tanh(g), h = sigma(o) * tanh(c), zero initial state;
  - unskew; the right-to-left map is mirrored back and shifted down one row (row r takes row
    r - 1's values, row 0 zeros), because unshifted it would see the pixel to the right; then the
    two directions are added and a mask-B 1x1 conv takes h back to 2h, added to the layer input;
- head: ReLU -> mask-B 1x1 conv 2h -> ``head_channels`` -> ReLU -> mask-B 1x1 conv to 3 x 256
  logits, returned as (B, 256, 3, H, W).

Even one layer sees the causal context: left-to-right covers the rows above up to the current
column and the current row to its left, the shifted right-to-left covers the rows above from the
current column rightwards. One sub-pixel per row escapes, at any depth, as in the paper's design:
the B value of a row's last pixel (r, W - 1) reaches features only at later pixels inside the
mask-A kernel's reach (row r + 1 from column W - 1 - 7 // 2 on), so pixels of row r + 1 left of
that column never see it (the tests check exactly this).

Colour groups in the state: gates and state are grouped R/G/B like every feature map (each gate
split in three blocks of h / 3), so the elementwise cell update keeps group g a function of input
groups <= g at the current pixel. The state-to-state conv only reads the pixel above and the one to
the left, both wholly before the current pixel, so it needs no mask; the shifted right-to-left
output at row r depends on rows < r only. The paper uses L = 7 and h = 128 on CIFAR-10; the
defaults here are CPU-sized.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.models import register
from raysweep.models.masked import MaskedConv2d, PixelModel, channel_groups

GATES = 4  # i, f, o, g
DIRECTIONS = 2  # left-to-right, right-to-left


def skew(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """(..., H, W) -> (..., H, W + H - 1): row r shifted right by r, zeros elsewhere.

    With ``channels_last`` the map is (..., H, W, C) -> (..., H, W + H - 1, C). Pure padding and
    reshapes: each row is padded to width W + H, so in the flattened map element (r, w) sits at
    r * (W + H) + w = r * (W + H - 1) + (r + w); dropping the last H (padding) elements and
    reading rows of width W + H - 1 puts it at column r + w.
    """
    if not channels_last:
        return skew(x.unsqueeze(-1), channels_last=True).squeeze(-1)
    *lead, height, width, c = x.shape
    y = F.pad(x, (0, 0, 0, height))  # (..., H, W + H, C)
    y = y.reshape(*lead, height * (width + height), c)[..., : height * (width + height - 1), :]
    return y.view(*lead, height, width + height - 1, c)  # (..., H, W + H - 1, C)


def unskew(y: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """(..., H, W + H - 1) -> (..., H, W) (or with a trailing C): the inverse of ``skew``."""
    if not channels_last:
        return unskew(y.unsqueeze(-1), channels_last=True).squeeze(-1)
    *lead, height, skewed_width, c = y.shape
    width = skewed_width - height + 1
    z = F.pad(y.reshape(*lead, height * skewed_width, c), (0, 0, 0, height))  # (.., H*(W+H), C)
    return z.view(*lead, height, width + height, c)[..., :width, :]  # (..., H, W, C)


class DiagonalBiLSTMLayer(nn.Module):
    """One Diagonal BiLSTM layer with its residual connection: (B, 2h, H, W) -> (B, 2h, H, W).

    Both directions run as a batch of two (the right-to-left one on the mirrored map), each with
    its own weights, channels-last inside so every product is one batched matmul over B * H rows.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels // 2
        self.hidden = hidden
        # Channels: [left-to-right i, f, o, g | right-to-left i, f, o, g], each split R/G/B.
        gate_groups = channel_groups(hidden).repeat(DIRECTIONS * GATES)
        self.input_to_state = MaskedConv2d(
            channels, DIRECTIONS * GATES * hidden, 1, "B", out_groups=gate_groups
        )
        # 2x1 state-to-state kernel per direction, as a matrix: [state above | state left] -> gates.
        bound = 1.0 / math.sqrt(2 * hidden)  # PyTorch's default conv init for this fan-in
        self.state_to_state = nn.Parameter(
            torch.empty(DIRECTIONS, 2 * hidden, GATES * hidden).uniform_(-bound, bound)
        )
        self.up = MaskedConv2d(hidden, channels, 1, "B")
        with torch.no_grad():  # forget-gate bias 1 in both directions
            for d in range(DIRECTIONS):
                start = (d * GATES + 1) * hidden
                self.input_to_state.bias[start : start + hidden] += 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2h, H, W) -> (B, 2h, H, W)."""
        b, channels, height, width = x.shape
        hid = self.hidden
        x_cl = x.permute(0, 2, 3, 1)  # (B, H, W, 2h), a view
        xs = torch.stack([x_cl, x_cl.flip(2)])  # (2, B, H, W, 2h): [left-to-right; mirrored]
        # Masked 1x1 input-to-state conv, one matmul per direction: (2, 2h, 4h) weights.
        w_in = self.input_to_state.masked_weight().view(DIRECTIONS, GATES * hid, channels)
        b_in = self.input_to_state.bias.view(DIRECTIONS, 1, GATES * hid)
        pre = torch.baddbmm(b_in, xs.view(DIRECTIONS, -1, channels), w_in.transpose(1, 2))
        pre = pre.view(DIRECTIONS, b, height, width, GATES * hid)  # (2, B, H, W, 4h)
        # Skewed after the conv, so padding gets zero pre-activations and its states stay zero:
        # the pixel left of column 0 is the zero initial state.
        pre = skew(pre, channels_last=True)  # (2, B, H, W', 4h), W' = W + H - 1
        c = pre.new_zeros(DIRECTIONS, b, height, hid)  # (2, B, H, h)
        h = c
        columns = []
        # unbind: one backward (a stack), where pre[:, :, :, t] would write a full-size gradient
        # per column.
        for t, gates in enumerate(pre.unbind(3)):  # gates: (2, B, H, 4h)
            if t:
                # 2x1 kernel over the previous column: rows r - 1 (pixel above) and r (left).
                above = F.pad(h, (0, 0, 1, 0))[:, :, :height]  # (2, B, H, h)
                prev = torch.cat([above, h], dim=3).view(DIRECTIONS, b * height, 2 * hid)
                gates = torch.baddbmm(
                    gates.reshape(DIRECTIONS, b * height, GATES * hid), prev, self.state_to_state
                ).view(DIRECTIONS, b, height, GATES * hid)
            i, f, o, g = gates.chunk(GATES, dim=3)  # each (2, B, H, h)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            columns.append(h)
        out = unskew(torch.stack(columns, dim=3), channels_last=True)  # (2, B, H, W, h)
        l2r, r2l = out[0], out[1].flip(2)  # each (B, H, W, h); right-to-left mirrored back
        r2l = F.pad(r2l, (0, 0, 0, 0, 1, 0))[:, :height]  # shifted down a row: row r gets r - 1
        # Masked 1x1 conv h -> 2h as a matmul: (2h, h) weights.
        w_up = self.up.masked_weight().view(channels, hid)
        y = torch.addmm(self.up.bias, (l2r + r2l).reshape(-1, hid), w_up.t())  # (B*H*W, 2h)
        return x + y.view(b, height, width, channels).permute(0, 3, 1, 2)  # (B, 2h, H, W)


@register("diagonal_bilstm")
class DiagonalBiLSTM(PixelModel):
    """7x7 mask-A conv, residual Diagonal BiLSTM layers, 1x1 masked head to 256-way logits."""

    def __init__(
        self,
        channels: int = 96,  # 2h: features between layers; each direction's LSTM has h units
        layers: int = 2,  # Diagonal BiLSTM layers (paper: 7)
        head_channels: int = 192,  # features of the hidden 1x1 output layer (paper: 1024)
        first_kernel_size: int = 7,  # odd; the mask-A input conv
    ) -> None:
        super().__init__(channels, layers, head_channels, first_kernel_size, DiagonalBiLSTMLayer)
