"""PixelRNN-paper models: causality, skew, bits/dim before and after overfitting, sampler, registry.

Kept CPU-small: 4x4..8x8 images, a few dozen channels; the whole file runs in well under a minute.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raysweep.metrics import bits_per_dim
from raysweep.models import build_model, count_parameters, model_names
from raysweep.models.diagonal_bilstm import skew, unskew
from raysweep.models.masked import (
    MaskedConv2d,
    causal_mask,
    channel_groups,
    nll_loss,
    sample,
    sample_grid,
    to_targets,
)

NAMES = ["pixelcnn", "row_lstm", "diagonal_bilstm"]
DEPTH_KEY = {"pixelcnn": "blocks", "row_lstm": "layers", "diagonal_bilstm": "layers"}
FIRST_KERNEL = 7  # the models' default mask-A input kernel


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is faster, and does not spin against a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(name: str, depth: int, **extra: object) -> torch.nn.Module:
    """A CPU-sized model; 48 head channels (16 per colour) so no output is all dead ReLUs. Seeded: its
    weights must not depend on which tests ran before (an unlucky draw can leave a path all dead)."""
    torch.manual_seed(0)
    config: dict[str, object] = {"channels": 24, "head_channels": 48, DEPTH_KEY[name]: depth}
    config.update(extra)
    return build_model(name, **config)


def dependencies(model: torch.nn.Module, size: int) -> torch.Tensor:
    """(3, H, W, 3, H, W) bool: does output sub-pixel (c, h, w) depend on input sub-pixel
    (c', h', w')? Exact zeros thanks to float64 and masked weights.

    The union over two random images, so that a ReLU that happens to be off everywhere on one
    path for one image cannot hide a dependency; a third image checks nothing leaks across the
    batch. All 3 * H * W gradients come from one batched backward pass.
    """
    torch.manual_seed(1)
    model = model.double()
    x = torch.rand(3, 3, size, size, dtype=torch.float64, requires_grad=True)
    logits = model(x)  # (3, 256, 3, H, W)
    proj = torch.randn(256, dtype=torch.float64)  # random mix of the 256 logits
    scores = torch.einsum("bkchw,k->bchw", logits, proj)[:2].sum(0).reshape(-1)  # (3 * H * W,)
    eye = torch.eye(scores.numel(), dtype=torch.float64)  # one row per output sub-pixel
    (grads,) = torch.autograd.grad(scores, x, eye, is_grads_batched=True)  # (3HW, 3, 3, H, W)
    assert not grads[:, 2].any(), "outputs of images 0 and 1 depend on image 2"
    deps = (grads[:, 0] != 0) | (grads[:, 1] != 0)  # (3HW, 3, H, W)
    return deps.view(3, size, size, 3, size, size)


def raster_index(c: int, h: int, w: int, size: int) -> int:
    """Position of sub-pixel (c, h, w) in the generation order (pixels raster, then R, G, B)."""
    return (h * size + w) * 3 + c


def diagonal_blind_spot(c: int, h: int, w: int, size: int) -> set[tuple[int, int, int]]:
    """Earlier sub-pixels the Diagonal BiLSTM cannot see (see the check below)."""
    # The B value of a row's last pixel (h - 1, W - 1) enters features only at later pixels within
    # the mask-A kernel: row h from column W - 1 - k // 2 on. The right-to-left LSTM brings row
    # h - 1 down to row h but cannot carry that, so row h left of that column never sees it.
    if h >= 1 and w < size - 1 - FIRST_KERNEL // 2:
        return {(2, h - 1, size - 1)}
    return set()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth", [1, 3])
def test_causality_and_context(name: str, depth: int) -> None:
    size = 6
    deps = dependencies(small(name, depth), size)  # (3, H, W, 3, H, W)
    for c in range(3):
        for h in range(size):
            for w in range(size):
                d = deps[c, h, w]  # (3, H, W): input sub-pixels output (c, h, w) depends on
                here = raster_index(c, h, w, size)
                for cc in range(3):
                    for hh in range(size):
                        for ww in range(size):
                            if raster_index(cc, hh, ww, size) >= here:
                                assert not d[cc, hh, ww], (
                                    f"{name}: ({c},{h},{w}) sees the future ({cc},{hh},{ww})"
                                )
                must = [(cc, h, w) for cc in range(c)]  # same pixel, earlier colours
                if w > 0:
                    must += [(cc, h, w - 1) for cc in range(3)]  # pixel to the left
                if h > 0:
                    must += [(cc, h - 1, w) for cc in range(3)]  # pixel above
                    if w + 1 < size:
                        must += [(cc, h - 1, w + 1) for cc in range(3)]  # above right
                    if w > 0:
                        must += [(cc, h - 1, w - 1) for cc in range(3)]  # above left
                for cc, hh, ww in must:
                    assert d[cc, hh, ww], f"{name}: ({c},{h},{w}) ignores ({cc},{hh},{ww})"
                if name == "diagonal_bilstm":
                    # The whole causal context, up to one sub-pixel per row (paper's design).
                    blind = diagonal_blind_spot(c, h, w, size)
                    for cc in range(3):
                        for hh in range(size):
                            for ww in range(size):
                                earlier = raster_index(cc, hh, ww, size) < here
                                if earlier and (cc, hh, ww) not in blind:
                                    assert d[cc, hh, ww], (
                                        f"{name}: ({c},{h},{w}) ignores ({cc},{hh},{ww})"
                                    )


def test_row_lstm_receptive_field_is_a_triangle() -> None:
    """Row LSTM sees k // 2 more columns per row upwards (plus the 7x7 conv's 3): 2 rows up, the
    far corner is out of reach for depth 1 but the pixel 4 columns right is in."""
    size = 8
    deps = dependencies(small("row_lstm", 1), size)
    assert deps[0, 4, 0, :, 2, 4].all()  # 2 rows up, 4 right: 3 (conv) + 1 (one state step)
    assert not deps[0, 4, 0, :, 2, 7].any()  # 2 rows up, 7 right: outside the triangle


def test_masks() -> None:
    groups = channel_groups(3)
    assert groups.tolist() == [0, 1, 2]
    assert channel_groups(768).view(3, 256).unique(dim=1).tolist() == [[0], [1], [2]]
    a = causal_mask(groups, groups, (3, 3), "A")  # (3, 3, 2, 3)
    b = causal_mask(groups, groups, (3, 3), "B")
    assert a.shape == (3, 3, 2, 3)
    assert (a[:, :, 0] == 1).all() and (a[:, :, 1, 0] == 1).all() and (a[:, :, 1, 2] == 0).all()
    assert a[:, :, 1, 1].tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert b[:, :, 1, 1].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    conv = MaskedConv2d(3, 6, 5, "A")
    assert conv(torch.rand(2, 3, 7, 7)).shape == (2, 6, 7, 7)


@pytest.mark.parametrize("height,width", [(1, 1), (3, 3), (4, 7), (6, 2)])
def test_skew_round_trip(height: int, width: int) -> None:
    x = torch.randn(2, 5, height, width)
    s = skew(x)
    assert s.shape == (2, 5, height, width + height - 1)
    for r in range(height):
        assert torch.equal(s[:, :, r, r : r + width], x[:, :, r])  # row r shifted right by r
        assert not s[:, :, r, :r].any() and not s[:, :, r, r + width :].any()
    assert torch.equal(unskew(s), x)
    x_cl = x.permute(0, 2, 3, 1)  # (B, H, W, C): the layout the layers use
    s_cl = skew(x_cl, channels_last=True)
    assert torch.equal(s_cl, s.permute(0, 2, 3, 1))
    assert torch.equal(unskew(s_cl, channels_last=True), x_cl)


@pytest.mark.parametrize("name", NAMES)
def test_untrained_model_is_about_8_bits(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.rand(4, 3, 8, 8)
    logits = model(x)
    assert logits.shape == (4, 256, 3, 8, 8)
    bpd = bits_per_dim(nll_loss(logits, x).item())
    assert 7.5 < bpd < 8.5
    assert math.isclose(bpd, nll_loss(logits, x).item() / math.log(2), rel_tol=1e-6)


def test_bits_per_dim_of_a_known_distribution() -> None:
    x = torch.rand(2, 3, 4, 4)
    uniform = torch.zeros(2, 256, 3, 4, 4)
    assert bits_per_dim(nll_loss(uniform, x).item()) == pytest.approx(8.0)
    certain = torch.full((2, 256, 3, 4, 4), -1e4).scatter(1, to_targets(x).unsqueeze(1), 0.0)
    assert bits_per_dim(nll_loss(certain, x).item()) == pytest.approx(0.0, abs=1e-6)
    assert to_targets(torch.tensor([0.0, 1.0, 0.5, 1.2, -0.1])).tolist() == [0, 255, 128, 255, 0]


@pytest.mark.parametrize("name", NAMES)
def test_overfits_a_few_tiny_images(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 4, 4)).float() / 255
    model = small(name, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nll_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert bits_per_dim(nll_loss(model(x), x).item()) < 2.0


@pytest.mark.parametrize("name", NAMES)
def test_sampler(name: str) -> None:
    torch.manual_seed(0)
    model = small(name, 1, channels=12, head_channels=24)
    model.train()
    a = sample(model, 3, 4, seed=7)
    assert a.shape == (3, 3, 4, 4) and a.dtype == torch.uint8
    assert model.training  # restored
    assert torch.equal(a, sample(model, 3, 4, seed=7))
    assert not torch.equal(a, sample(model, 3, 4, seed=8))
    gen = torch.Generator().manual_seed(7)
    assert torch.equal(a, sample(model, 3, 4, generator=gen))
    assert a.int().min() >= 0 and a.int().max() <= 255
    sharp = sample(model, 3, 4, seed=7, temperature=0.05)
    assert sharp.shape == (3, 3, 4, 4)
    assert sample(model.double(), 2, 3, seed=1).shape == (2, 3, 3, 3)  # float64 models too


def test_sampler_matches_the_model_distribution() -> None:
    """Sampling from a model trained on one constant image reproduces that image."""
    torch.manual_seed(0)
    target = torch.tensor([10, 200, 90], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    x = target.float() / 255
    model = small("pixelcnn", 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = nll_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(sample(model, 2, 4, seed=0, temperature=0.5), target)


def test_sample_grid() -> None:
    images = torch.randint(0, 256, (5, 3, 4, 6), dtype=torch.uint8)
    grid = sample_grid(images, pad=2)  # 3 columns, 2 rows
    assert grid.shape == (2 * 6 + 2, 3 * 8 + 2, 3) and grid.dtype == np.uint8
    assert np.array_equal(grid[2:6, 2:8], images[0].numpy().transpose(1, 2, 0))
    assert np.array_equal(grid[8:12, 10:16], images[4].numpy().transpose(1, 2, 0))
    assert sample_grid(images.numpy(), ncols=5, pad=0).shape == (4, 30, 3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [8, 16])
def test_registry_defaults_any_size(name: str, size: int) -> None:
    assert name in model_names()
    model = build_model(name)
    assert count_parameters(model) > 0
    x = torch.rand(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 256, 3, size, size)
    nll_loss(logits, x).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast(name: str) -> None:
    """Training runs under bf16 autocast: no hard-coded dtypes, loss in float32, finite grads."""
    torch.manual_seed(0)
    model = small(name, 1)
    x = torch.rand(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = nll_loss(logits, x)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert 7.5 < loss.item() / math.log(2) < 8.5
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_fails_clearly(name: str) -> None:
    with pytest.raises(ValueError, match="channels must be even and >= 6, got 4"):
        build_model(name, channels=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_key'"):
        build_model(name, no_such_key=1)
