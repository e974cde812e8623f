"""airbench94's recipe choices in the cnn study: whitening, conv groups, BN bias scaling, Lookahead,
alternating flips, and the ``airbench`` space trained end to end (no Ray needed)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from raysweep.data.errors import DataError
from raysweep.models import build_model
from raysweep.search_spaces import SpaceError, configs_of
from raysweep.search_spaces.cnn import HYPERS, SPACES, check_net
from raysweep.trainables.cnn import WHITEN_IMAGES, CnnTask
from raysweep.trainables.cnn_recipe import Lookahead, net_config
from raysweep.training import LocalSession, TrialContext, run_trial

TINY = "8-16-16"  # widths small enough for a CPU test


def _ctx(epochs: int) -> TrialContext:
    return TrialContext(study="cnn", data="synthetic", epochs=epochs, metric="val_acc", mode="max")


def _airbench(**kw: Any) -> dict[str, Any]:
    (cfg,) = configs_of(SPACES["airbench"])
    return {**cfg, "widths": TINY, **kw}


def test_whitening_conv_whitens_the_patches_it_was_set_from() -> None:
    """The first 12 filters give the 2x2x3 patches identity covariance; the other 12 are their negatives;
    the weights are frozen (not trained), the bias is not."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1, 32, 32, generator=gen)
    images = torch.cat([base, 0.6 * base + 0.5 * torch.randn(64, 2, 32, 32, generator=gen)], 1)  # correlated RGB
    model = build_model("cnn", widths=(8, 16, 16), whiten=True)
    model.init_whitening(images)
    conv = model.features.whiten[0]
    assert not conv.weight.requires_grad and conv.bias.requires_grad
    w = conv.weight.detach().double()
    assert torch.equal(w[12:], -w[:12])
    out = torch.nn.functional.conv2d(images.double(), w[:12])  # (N, 12, 31, 31), bias-free
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = flat.T @ flat / len(flat)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=0.01)  # eps shrinks it a little


def test_widths_build_conv_groups_that_pool_inside_each_group() -> None:
    """Per stage: conv, 2x2 max-pool, BN (weight frozen at 1), act, conv, BN, act; identity-initialised
    convs; a global max-pool and a bias-free linear head. The report's net is untouched by default."""
    model = build_model("cnn", widths=(8, 16, 16), activation="gelu").eval()
    sizes: dict[str, int] = {}
    for i in range(6):
        model.conv_layer(f"conv_{i}").register_forward_hook(lambda m, a, out, i=i: sizes.update({i: out.shape[-1]}))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sizes == {0: 16, 1: 16, 2: 8, 3: 8, 4: 4, 5: 4}
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6 and all(not b.weight.requires_grad and b.bias.requires_grad for b in bns)
    assert any(isinstance(m, torch.nn.GELU) for m in model.modules())
    first = model.conv_layer("conv_0")[0].weight  # (8, 3, 3, 3): channels 0-2 copy the input
    assert torch.equal(first[:3, :, 1, 1], torch.eye(3))
    (linear,) = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear.bias is None
    assert build_model("cnn", filters=8, layers=3).conv_layer("conv_0")[2].__class__ is torch.nn.ReLU


def test_a_cnn_configuration_names_its_net_and_widths_are_checked() -> None:
    assert check_net({"filters": 8, "layers": 3}) == ()
    assert check_net({"widths": "64-256-256"}) == (64, 256, 256)
    with pytest.raises(SpaceError, match="needs filters and layers"):
        check_net({"lr": 0.1})
    for bad in ("64-x", "0-8", "8-8-8-8-8"):
        with pytest.raises(SpaceError, match="joined by '-'"):
            HYPERS["widths"].check(bad)
    assert net_config({"filters": 8, "layers": 3}) == {"filters": 8, "layers": 3, "dropout": 0.5}  # keys unchanged
    assert net_config(_airbench(dropout=0.0)) == {"widths": [8, 16, 16], "dropout": 0.0, "activation": "gelu",
                                                 "whiten": True}  # fmt: skip


def test_lookahead_pulls_the_weights_to_their_average_every_five_steps() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    la = Lookahead(net, decay=0.9, total_steps=10)
    la.start()  # average = 0
    for step in range(1, 6):
        with torch.no_grad():
            net.weight.fill_(float(step))  # as if the optimizer moved it
        la.step(step)
    rho = 0.9**5 * (5 / 10) ** 3
    assert net.weight.item() == pytest.approx((1 - rho) * 5.0)  # only step 5 pulled: avg = rho*0 + (1-rho)*5
    with torch.no_grad():
        net.weight.fill_(100.0)
    la.finish()
    assert net.weight.item() == pytest.approx((1 - rho) * 5.0)  # the epoch ends on the average


def test_bn_biases_train_at_a_scaled_learning_rate_and_frozen_weights_not_at_all() -> None:
    task = CnnTask(_airbench(), _ctx(2), torch.device("cpu"))
    main, biases = task.opt.param_groups
    bn_biases = {id(m.bias) for m in task.model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in biases["params"]} == bn_biases
    assert biases["lr"] == pytest.approx(64 * main["lr"])  # through the one-cycle schedule too
    assert biases["weight_decay"] == pytest.approx(main["weight_decay"] / 64)
    trained = {id(p) for g in task.opt.param_groups for p in g["params"]}
    frozen = [p for p in task.model.parameters() if not p.requires_grad]
    assert frozen and not trained & {id(p) for p in frozen}
    n = min(WHITEN_IMAGES, len(task.train_idx))  # whitened from training images: the split's first n
    expected = build_model("cnn", **net_config(_airbench()))
    expected.init_whitening(task._batch(task.train_idx[:n])[0])
    assert torch.equal(task.model.features.whiten[0].weight, expected.features.whiten[0].weight)


def test_alternating_flips_mirror_each_image_in_every_other_epoch() -> None:
    """Same generator state: the same crops, and each image mirrored in exactly one of two epochs."""
    task = CnnTask(_airbench(), _ctx(2), torch.device("cpu"))
    idx = task.train_idx[:64]
    state = task.gen.get_state()
    even, _ = task._batch(idx, augment=True, epoch=0)
    task.gen.set_state(state)
    odd, _ = task._batch(idx, augment=True, epoch=1)
    task.gen.set_state(state)
    two, _ = task._batch(idx, augment=True, epoch=2)
    assert torch.equal(odd, even.flip(3)) and torch.equal(two, even)
    random_flips = CnnTask(_airbench(flip="random"), _ctx(2), torch.device("cpu"))
    random_flips.gen.set_state(state)
    drawn_even, _ = random_flips._batch(idx, augment=True, epoch=0)
    random_flips.gen.set_state(state)
    drawn_odd, _ = random_flips._batch(idx, augment=True, epoch=1)
    assert torch.equal(drawn_odd, drawn_even)  # random flips come from the draws alone, whatever the epoch


def test_the_airbench_space_trains_and_learns(tmp_path) -> None:
    cfg = _airbench(batch_size=32)  # 28 steps an epoch of the 900 synthetic training images
    last = run_trial(CnnTask, cfg, _ctx(3), LocalSession(workdir=str(tmp_path), cpus=1))
    assert last["best_val_acc"] > 0.5  # chance 0.1
    assert 0.0 <= last["test_acc"] <= 1.0


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"filters": 8, "layers": 11}, None, ""),  # 5 pools take 32x32 to 1x1
        ({"filters": 8, "layers": 11, "whiten": 1}, DataError, "pools 31x31 maps 5 times, below 1x1; use at most "
                                                               "--set layers=9"),  # fmt: skip
        ({"widths": "8-8-8-8", "whiten": 1}, None, ""),
        ({"lr": 0.1}, SpaceError, "needs filters and layers"),
    ],
)
def test_the_pre_flight_check_refuses_a_cnn_that_pools_below_1x1_or_names_no_net(config, error, message) -> None:
    from raysweep.data.cifar10 import check_configs

    configs = [{"batch_size": 8, **config}]
    if error is None:
        check_configs(configs, "synthetic", {})
    else:
        with pytest.raises(error, match=message):
            check_configs(configs, "synthetic", {})
