"""``--amp auto``: a measured, cached choice of bf16 autocast, recorded on the run; bf16 costs no accuracy."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from raysweep import tracking
from raysweep.trainables.cnn import CnnTask
from raysweep.training import LocalSession, TrialContext, run_trial
from raysweep.training import amp as amp_mod

CFG = {"lr": 0.003, "batch_size": 64, "filters": 8, "layers": 3, "seed": 0}


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch, tmp_path) -> list[tuple[float, float]]:
    """Scripted probe timings (fp32 s, bf16 s); each call pops one, so a cached answer pops none."""
    monkeypatch.setenv("RAYSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    script: list[tuple[float, float]] = []
    monkeypatch.setattr(amp_mod, "probe", lambda model, batch, device=None: script.pop(0))
    return script


def _model() -> torch.nn.Module:
    from raysweep.models import build_model

    return build_model("cnn", filters=8, layers=3)


def test_auto_picks_bf16_only_where_it_is_faster_and_probes_once_per_model(probes) -> None:
    cpu = torch.device("cpu")
    probes[:] = [(2.0, 1.0), (1.0, 1.05)]
    amp, why = amp_mod.resolve_amp("auto", cpu, _model(), 64, {"name": "cnn", "filters": 8})
    assert amp == "bf16" and "2.00x faster" in why
    assert amp_mod.resolve_amp("auto", cpu, _model(), 64, {"name": "cnn", "filters": 8})[0] == "bf16"
    assert len(probes) == 1  # the second trial of the same shape read the node's cache
    amp, why = amp_mod.resolve_amp("auto", cpu, _model(), 64, {"name": "cnn", "filters": 16})
    assert amp == "off" and "fp32" in why and not probes  # another shape is probed; not faster: fp32


def test_cuda_is_probed_too_and_keeps_fp32_where_bf16_is_slower(monkeypatch, tmp_path) -> None:
    # on an H200 bf16 autocast trained a 64x7 CNN at 0.76x of fp32's speed (TF32 convolutions)
    monkeypatch.setenv("RAYSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    asked: list[tuple[int, str]] = []
    monkeypatch.setattr(amp_mod, "probe", lambda model, batch, device=None: asked.append((batch, device.type))
                        or (1.0, 1.32))  # fmt: skip
    spec = {"name": "cnn", "filters": 64}
    amp, why = amp_mod.resolve_amp("auto", torch.device("cuda"), _model(), 256, spec)
    assert amp == "off" and why.startswith("cuda probe") and "fp32" in why
    assert amp_mod.resolve_amp("auto", torch.device("cpu"), _model(), 256, spec)[0] == "off"
    # the GPU is probed at the trial's batch; the node's CPU, another chip, apart and at a capped one
    assert asked == [(256, "cuda"), (amp_mod.PROBE_BATCH, "cpu")]


def test_auto_keeps_fp32_where_bf16_fails_to_run(monkeypatch, tmp_path) -> None:
    """oneDNN has no bf16 LSTM on some CPUs: ``auto`` then trains in fp32 instead of failing the trial."""
    monkeypatch.setenv("RAYSWEEP_CACHE_DIR", str(tmp_path / "cache"))

    def failing(model: torch.nn.Module, batch: int, device: torch.device | None = None) -> tuple[float, float]:
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")

    monkeypatch.setattr(amp_mod, "probe", failing)
    amp, why = amp_mod.resolve_amp("auto", torch.device("cpu"), _model(), 64)
    assert amp == "off" and "bf16 autocast fails" in why and "LSTM forward" in why and why.endswith(": fp32")


def test_explicit_choices_need_no_probe(probes) -> None:
    assert amp_mod.resolve_amp("off", torch.device("cpu"), _model()) == ("off", "--amp off asked for")
    assert amp_mod.resolve_amp("bf16", torch.device("cpu"), _model())[0] == "bf16"
    assert amp_mod.resolve_amp("bf16", torch.device("cuda"), _model())[0] == "bf16"
    assert amp_mod.resolve_amp("auto", torch.device("cpu"), torch.nn.Linear(2, 2))[0] == "off"  # no example_input
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_mod.resolve_amp("fp16", torch.device("cpu"), _model())


def test_real_probe_times_both_modes_and_leaves_the_model_untouched() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dtypes: list[torch.dtype] = []  # the probe's copy of the model keeps this hook: its head's output dtypes
    (head,) = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    hook = head.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    fp32_s, bf16_s = amp_mod.probe(model, 8)
    hook.remove()
    assert fp32_s > 0 and bf16_s > 0
    steps = amp_mod.WARMUP_STEPS + amp_mod.TIMED_STEPS
    assert dtypes == [torch.float32, torch.bfloat16] * steps  # each step in fp32, then in bf16 autocast
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def _ctx(amp: str, **kw: Any) -> TrialContext:
    return TrialContext(study="cnn", data="synthetic", epochs=3, metric="val_acc", mode="max", amp=amp, **kw)


def test_the_run_records_the_choice_and_its_reason(probes, tracking_uri, tmp_path) -> None:
    probes[:] = [(3.0, 1.0)]
    info = tracking.start_sweep_run(tracking_uri, "amp", "amp-sweep", {}, {})
    run_trial(CnnTask, CFG, _ctx("auto", tracking=info), LocalSession(workdir=str(tmp_path), cpus=1))
    (run,) = tracking.child_runs(tracking_uri, info)
    assert run.data.params["amp"] == "bf16" and "3.00x faster" in run.data.params["amp_reason"]


def test_bf16_and_fp32_runs_of_one_seed_reach_comparable_loss(tmp_path) -> None:
    last = {}
    for amp in ("off", "bf16"):
        s = LocalSession(workdir=str(tmp_path / amp), cpus=1)
        last[amp] = run_trial(CnnTask, CFG, _ctx(amp), s)
    fp32, bf16 = last["off"], last["bf16"]
    assert fp32["val_loss"] < 1.5  # both learn (chance: ln 10 = 2.30)
    assert abs(bf16["val_loss"] - fp32["val_loss"]) <= 0.15 * fp32["val_loss"]
    assert abs(bf16["test_acc"] - fp32["test_acc"]) <= 0.08
