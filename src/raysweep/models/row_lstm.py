"""Row LSTM of the PixelRNN paper (van den Oord et al., 2016, Sec. 3.1 and Table 1), study
``row_lstm``.

Architecture, for ``channels`` = 2h, ``layers`` = L and ``kernel_size`` = k:

- input: (B, 3, H, W) in [0, 1], scaled to [-1, 1]; 7x7 mask-A conv, 3 -> 2h channels;
- L Row LSTM layers, each with a residual connection. A layer processes the map one row at a time,
  top to bottom, all columns of a row in parallel:
  - input-to-state: a mask-B 1 x k conv along the row, 2h -> 4h (gates i, f, o, g), computed for
    all rows at once before the recurrence; with the mask it sees the current pixel (colour
    groups as in ``masked``) and the k // 2 pixels to its left;
  - state-to-state: an unmasked 1D conv of width k over the previous row's hidden state,
    h -> 4h, no bias; so the receptive field above is a triangle widening by k // 2 per row;
  - c_r = sigma(f) * c_{r-1} + sigma(i) * tanh(g), h_r = sigma(o) * tanh(c_r), zero initial
    state;
  - the h-channel output is taken back to 2h by a mask-B 1x1 conv and added to the layer input;
- head: ReLU -> mask-B 1x1 conv 2h -> ``head_channels`` -> ReLU -> mask-B 1x1 conv to 3 x 256
  logits, returned as (B, 256, 3, H, W).

Colour groups in the state: the gates' and the state's channels are grouped R/G/B exactly like
every other feature map (each of i, f, o, g is split in three blocks of h / 3), so the elementwise
cell update keeps group g of pixel (r, w) a function of input groups <= g at (r, w) only. The
state-to-state conv reads row r - 1 alone, which lies wholly before every sub-pixel of row r, so it
needs no mask. The paper uses L = 12 and h = 128 on CIFAR-10; the defaults here are CPU-sized.
"""

from __future__ import annotations

import torch
from torch import nn

from raysweep.models import register
from raysweep.models.masked import MaskedConv2d, PixelModel, channel_groups

GATES = 4  # i, f, o, g


class RowLSTMLayer(nn.Module):
    """One Row LSTM layer with its residual connection: (B, 2h, H, W) -> (B, 2h, H, W)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        hidden = channels // 2
        self.hidden = hidden
        gate_groups = channel_groups(hidden).repeat(GATES)  # i, f, o, g each split R/G/B
        self.input_to_state = MaskedConv2d(
            channels, GATES * hidden, (1, kernel_size), "B", out_groups=gate_groups
        )
        self.state_to_state = nn.Conv1d(
            hidden, GATES * hidden, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.up = MaskedConv2d(hidden, channels, 1, "B")
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.input_to_state.bias[hidden : 2 * hidden] += 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2h, H, W) -> (B, 2h, H, W)."""
        b, _, height, width = x.shape
        pre = self.input_to_state(x)  # (B, 4h, H, W), all rows at once
        # (H, B, 4h, W) -> H contiguous (B, 4h, W) slabs. unbind, not pre[r]: its backward is one
        # stack, while indexing row by row would write a full-size zero gradient per row.
        pre_rows = pre.permute(2, 0, 1, 3).contiguous().unbind(0)
        c = pre.new_zeros(b, self.hidden, width)  # (B, h, W)
        h = c
        rows = []
        for r in range(height):
            gates = pre_rows[r] if r == 0 else pre_rows[r] + self.state_to_state(h)  # (B, 4h, W)
            i, f, o, g = gates.chunk(GATES, dim=1)  # each (B, h, W)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            rows.append(h)
        out = torch.stack(rows, dim=2)  # (B, h, H, W)
        return x + self.up(out)


@register("row_lstm")
class RowLSTM(PixelModel):
    """7x7 mask-A conv, residual Row LSTM layers, 1x1 masked head to 256-way logits."""

    def __init__(
        self,
        channels: int = 96,  # 2h: features between layers; each LSTM has h hidden units
        layers: int = 3,  # Row LSTM layers (paper: 12)
        kernel_size: int = 3,  # odd; width of the input-to-state and state-to-state convs
        head_channels: int = 192,  # features of the hidden 1x1 output layer (paper: 1024)
        first_kernel_size: int = 7,  # odd; the mask-A input conv
    ) -> None:
        kernel_size = int(kernel_size)
        super().__init__(channels, layers, head_channels, first_kernel_size,
                         lambda c: RowLSTMLayer(c, kernel_size))  # fmt: skip
