"""Every registered model, and the CNN's exact architecture."""

from __future__ import annotations

import pytest
import torch

from raysweep.models import build_model, count_parameters, model_names
from raysweep.models.cnn import conv_channels


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_runs_forward_backward_without_nan(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    x = model.example_input(2)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_unknown_model_names_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="cnn"):
        build_model("resnet9000")


def _expected_params(filters: int, layers: int, classes: int = 10) -> int:
    total, c_in = 0, 3
    for c in conv_channels(filters, layers):
        total += c_in * c * 9 + 2 * c  # conv (no bias) + BatchNorm scale and shift
        c_in = c
    return total + c_in * classes + classes


@pytest.mark.parametrize("filters", [16, 32, 64])
@pytest.mark.parametrize("layers", [3, 5, 7])
def test_cnn_grid_shapes_params_and_names(filters: int, layers: int) -> None:
    model = build_model("cnn", filters=filters, layers=layers).eval()
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 10)
    assert count_parameters(model) == _expected_params(filters, layers)
    convs = [n for n, _ in model.features.named_children() if n.startswith("conv_")]
    assert convs == [f"conv_{i}" for i in range(layers)]
    assert isinstance(model.conv_layer(f"conv_{layers - 1}")[0], torch.nn.Conv2d)


def test_cnn_matches_the_reports_parameter_counts() -> None:
    assert count_parameters(build_model("cnn", filters=32, layers=5)) == 141_034
    assert count_parameters(build_model("cnn", filters=64, layers=7)) == 2_332_106


@pytest.mark.parametrize("kwargs", [{"layers": 0}, {"layers": 12}, {"filters": 0}])
def test_cnn_rejects_unsupported_shapes(kwargs: dict) -> None:
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=rf"{name} must be in 1\.\.\d+, got {value}"):  # the limit, not a torch error
        build_model("cnn", **kwargs)
