"""The report's configurable CNN for CIFAR-10 (study ``cnn``), and airbench94's variant of it.

Schedule, for ``filters`` = F and ``layers`` = L (conv_0 ... conv_{L-1}):

- conv_i: 3x3 convolution, padding 1, no bias (BatchNorm follows), then BatchNorm and ReLU;
  out channels F * 2**(i // 2): F, F, 2F, 2F, 4F, 4F, 8F, ...
- a 2x2 max-pool after every odd-numbered conv (conv_1, conv_3, conv_5, ...):
  32x32 -> 16 -> 8 -> 4 for L = 7, so conv_6 sees 4x4 maps.
- classifier: global average pool -> dropout (the report's 0.5; hyperparameter ``dropout``) -> linear
  to 10 logits (softmax in the loss).

This reproduces the report's parameter counts exactly: 141,034 for F=32, L=5 and 2,332,106 for
F=64, L=7. Supported: 1 <= L <= MAX_LAYERS (pooling stops at 1x1 for 32x32 inputs) and
1 <= F <= MAX_FILTERS.

``widths`` (e.g. (64, 256, 256)) builds airbench94's net instead (``cnn_parts.conv_groups``: per stage
conv -> pool -> BN -> act -> conv -> BN -> act, BN weights frozen at 1, then a global max-pool and a
bias-free linear whose logits are scaled by 1/9); ``filters`` and ``layers`` are then unused.
``activation`` (relu or gelu) and ``whiten`` (a frozen 2x2 patch-whitening conv first, 32x32 ->
31x31, set by ``init_whitening`` from training images) apply to both nets. The defaults build the
report's net unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from raysweep.models import cnn_parts, register

MAX_LAYERS = 11  # floor(11 / 2) = 5 poolings take 32x32 to 1x1
MAX_WHITENED_LAYERS = 9  # 4 poolings take the whitened 31x31 maps to 1x1
MAX_STAGES = 4  # of ``widths``: one pooling each
MAX_FILTERS = 256
DROPOUT = 0.5  # the report's, before the dense classifier


def conv_channels(filters: int, layers: int) -> list[int]:
    """Output channels of conv_0 ... conv_{layers-1}."""
    return [filters * 2 ** (i // 2) for i in range(layers)]


@register("cnn")
class ConfigurableCNN(nn.Module):
    """3x3 conv + BN + ReLU blocks named conv_i, 2x2 max-pool after odd blocks, GAP + dense head
    (or, with ``widths``, airbench94's conv groups and head)."""

    def __init__(
        self,
        filters: int = 32,  # base channels of conv_0; doubles every two convs
        layers: int = 5,  # number of conv blocks
        num_classes: int = 10,
        dropout: float = DROPOUT,  # share of pooled features zeroed before the dense classifier
        in_channels: int = 3,
        widths: Sequence[int] = (),  # channels of each airbench conv group; () = the report's net
        activation: str = "relu",  # after every BatchNorm (and the whitening conv): relu or gelu
        whiten: bool = False,  # a frozen 2x2 patch-whitening conv before conv_0
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        most = MAX_WHITENED_LAYERS if whiten else MAX_LAYERS
        if not widths and not 1 <= int(layers) <= most:
            raise ValueError(f"layers must be in 1..{most}{' with whiten' * bool(whiten)}, got {layers}")
        if not 1 <= int(filters) <= MAX_FILTERS:
            raise ValueError(f"filters must be in 1..{MAX_FILTERS}, got {filters}")
        if not len(widths) <= MAX_STAGES or not all(1 <= w <= MAX_FILTERS for w in widths):
            raise ValueError(f"widths must be 1..{MAX_STAGES} stages of 1..{MAX_FILTERS} channels, got {widths}")
        blocks: list[tuple[str, nn.Module]] = []
        c_in = in_channels
        if whiten:
            blocks.append(("whiten", cnn_parts.whitening_stem(in_channels, activation)))
            c_in = cnn_parts.whiten_channels(in_channels)
        if widths:
            blocks += cnn_parts.conv_groups(c_in, widths, activation)
            self.features = nn.Sequential(OrderedDict(blocks))
            self.head = cnn_parts.group_head(widths[-1], num_classes, dropout)
            return
        for i, c_out in enumerate(conv_channels(int(filters), int(layers))):
            block = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                cnn_parts.activation(activation),
            )
            blocks.append((f"conv_{i}", block))
            if i % 2 == 1:
                blocks.append((f"pool_{i}", nn.MaxPool2d(2)))
            c_in = c_out
        self.features = nn.Sequential(OrderedDict(blocks))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float images -> (B, num_classes) logits."""
        return self.head(self.features(x))

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """A valid input for the registry-wide test: (batch, 3, 32, 32) images."""
        return torch.randn(batch, 3, 32, 32)

    def conv_layer(self, name: str) -> nn.Module:
        """The block named ``conv_i`` (for feature-map hooks)."""
        return getattr(self.features, name)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor) -> None:
        """Set the whitening conv's weights from (N, 3, H, W) normalized training images."""
        conv = self.features.whiten[0]
        conv.weight.copy_(cnn_parts.whitening_weights(images.detach().cpu().float()).to(conv.weight))
