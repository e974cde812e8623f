"""``--amp auto``: use bf16 autocast where it pays, measured once per node and model shape.

Why measure: it depends on the chip and the model, on GPUs too. AMX / AVX-512-bf16 CPUs train the
CNN 2-3x faster in bf16, older ones slower; on an H200 bf16 autocast trained the benchmark's 64x7
CNN at 0.76x of fp32's speed (2026-12-04: fp32 convolutions already run on tensor cores as TF32,
and autocast adds casts). A few timed training steps of the trial's own model, fp32 against bf16,
decide; the answer is cached on the node (``$RAYSWEEP_CACHE_DIR/amp_probe.json``, keyed by CPU or
GPU, torch version, model and batch) so only the first trial of each model shape on a node pays
for it (about a second).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from raysweep.data.cache import cache_root
from raysweep.training.device import autocast

MODES = ("auto", "bf16", "off")
MIN_SPEEDUP = 1.10  # bf16 must be at least this much faster to be chosen (below: noise, keep fp32)
PROBE_BATCH = 32  # examples per CPU probe step (a trial's own batch, capped); a GPU probes the trial's batch,
# since a small one leaves it waiting on kernel launches in either precision
WARMUP_STEPS, TIMED_STEPS = 2, 4


def resolve_amp(pref: str, device: torch.device, model: torch.nn.Module, batch_size: int = PROBE_BATCH,
                spec: dict[str, Any] | None = None) -> tuple[str, str]:  # fmt: skip
    """``("bf16" | "off", reason)`` for the user's ``pref`` on ``device`` with ``model``."""
    if pref not in MODES:
        raise ValueError(f"amp must be one of {MODES}, got {pref!r}")
    if pref != "auto":
        return pref, f"--amp {pref} asked for"
    if device.type not in ("cpu", "cuda") or not hasattr(model, "example_input"):
        return "off", f"no probe for {device.type} / this model: fp32"
    batch = max(1, min(int(batch_size), PROBE_BATCH) if device.type == "cpu" else int(batch_size))
    key = _probe_key(model, batch, spec, device)
    path = cache_root() / "amp_probe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # trials starting together on a node probe once
        cached = _read(path)
        if key not in cached:
            try:
                fp32_s, bf16_s = probe(model, batch, device)
            except RuntimeError as exc:  # e.g. oneDNN has no bf16 LSTM on an AVX2-only CPU (AMD EPYC, seen)
                return "off", f"{device.type} probe: bf16 autocast fails for this model here ({str(exc)[:80]}): fp32"
            cached[key] = {"fp32_s": fp32_s, "bf16_s": bf16_s}
            path.write_text(json.dumps(cached, indent=1))
    entry = cached[key]
    speedup = entry["fp32_s"] / max(entry["bf16_s"], 1e-12)
    where = device.type
    if speedup >= MIN_SPEEDUP:
        return "bf16", f"{where} probe: bf16 autocast {speedup:.2f}x faster than fp32 for this model"
    return "off", f"{where} probe: bf16 autocast {speedup:.2f}x of fp32 speed for this model (< {MIN_SPEEDUP}x): fp32"


def probe(model: torch.nn.Module, batch: int, device: torch.device | None = None) -> tuple[float, float]:
    """Median seconds per training step (forward, backward) in fp32 and in bf16 autocast on ``device``
    (default CPU); on CUDA each step is timed to its end (synchronized).

    Runs on a copy of the model's weights, so the trial's own weights, RNG and gradients are untouched.
    """
    import copy

    device = device or torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    rng = torch.random.get_rng_state()
    try:
        clone = copy.deepcopy(model).to(device).train()
        x = clone.example_input(batch).to(device)
        times: dict[str, list[float]] = {"off": [], "bf16": []}
        for step in range(WARMUP_STEPS + TIMED_STEPS):
            for amp in ("off", "bf16"):  # alternate, so drifting load hits both alike
                sync(device)
                t0 = time.perf_counter()
                with autocast(device, amp):
                    out = clone(x)
                out = out[0] if isinstance(out, tuple) else out
                out.float().square().mean().backward()
                clone.zero_grad(set_to_none=True)
                sync(device)
                if step >= WARMUP_STEPS:
                    times[amp].append(time.perf_counter() - t0)
    finally:
        torch.random.set_rng_state(rng)
    return sorted(times["off"])[TIMED_STEPS // 2], sorted(times["bf16"])[TIMED_STEPS // 2]


def _probe_key(model: torch.nn.Module, batch: int, spec: dict[str, Any] | None,
               device: torch.device | None = None) -> str:  # fmt: skip
    shape = json.dumps(spec, sort_keys=True, default=str) if spec else repr(model)
    chip = _gpu_name(device) if device is not None and device.type == "cuda" else cpu_name()
    what = f"{chip}|torch {torch.__version__}|threads {torch.get_num_threads()}|batch {batch}|{shape}"
    return hashlib.sha1(what.encode()).hexdigest()[:16]


def _gpu_name(device: torch.device) -> str:
    try:
        return torch.cuda.get_device_name(device)
    except (RuntimeError, AssertionError, ValueError):  # no CUDA here (tests script the probe)
        return "cuda"


def cpu_name() -> str:
    """This machine's CPU model (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
