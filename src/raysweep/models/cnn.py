"""The report's configurable CNN for CIFAR-10 (study ``cnn``).

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
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from raysweep.models import register

MAX_LAYERS = 11  # floor(11 / 2) = 5 poolings take 32x32 to 1x1
MAX_FILTERS = 256
DROPOUT = 0.5  # the report's, before the dense classifier


def conv_channels(filters: int, layers: int) -> list[int]:
    """Output channels of conv_0 ... conv_{layers-1}."""
    return [filters * 2 ** (i // 2) for i in range(layers)]


@register("cnn")
class ConfigurableCNN(nn.Module):
    """3x3 conv + BN + ReLU blocks named conv_i, 2x2 max-pool after odd blocks, GAP + dense head."""

    def __init__(
        self,
        filters: int = 32,  # base channels of conv_0; doubles every two convs
        layers: int = 5,  # number of conv blocks
        num_classes: int = 10,
        dropout: float = DROPOUT,  # share of pooled features zeroed before the dense classifier
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 1 <= int(layers) <= MAX_LAYERS:
            raise ValueError(f"layers must be in 1..{MAX_LAYERS}, got {layers}")
        if not 1 <= int(filters) <= MAX_FILTERS:
            raise ValueError(f"filters must be in 1..{MAX_FILTERS}, got {filters}")
        blocks: list[tuple[str, nn.Module]] = []
        c_in = in_channels
        for i, c_out in enumerate(conv_channels(int(filters), int(layers))):
            block = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
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
