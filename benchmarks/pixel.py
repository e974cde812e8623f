"""Pixel study benchmarks: training speed at 32x32 and bits/dim after a fixed CPU budget.

    python benchmarks/pixel.py                  # ~14 min on a 2-core CPU; needs RAYSWEEP_DATA_DIR
    python benchmarks/pixel.py --smoke          # seconds, synthetic data
    python benchmarks/pixel.py --budget-s 60    # shorter budget per model

``measure(smoke, out)`` (``run(bc)``: the suite's entry) fills, for each model (pixelcnn, row_lstm, diagonal_bilstm):

- ``pixel_<model>_paper_images_per_s``: training steps of the study (forward, 256-way loss, backward,
  clipping, RMSprop) on 32x32 images, batch 16, at the paper's sizes (``report_models``: h=128,
  15/12/7 layers, 1024 head units); the median of a few timed steps after one warm-up step.
  Images per second of one process, so a ``report_models`` epoch takes 45,000 / this seconds.
- ``pixel_<model>_lossless_bpd_budget``: bits/dim on the lossless subset's test split (1,000
  original-pixel images, average-pooled to 8x8) after training on CIFAR-10 for ``budget_s``
  seconds (default 240: the three take ~14 min with evaluation), each model at the same small
  size (h=32, 3 layers, 128 head units, batch 32, peak lr 1e-2); ``pixel_<model>_budget_images``
  is how many training images that budget bought. The one-cycle schedule is fitted to the
  budget: a short timed warm-up measures the model's speed and sets the number of 4,096-image
  epochs, so on a machine whose load changes the run can overshoot the budget
  (``pixel_<model>_budget_wall_s`` says by how much: compare models only from a quiet machine).

Everything runs in this process through the study's own task and loop (``LocalSession``): no
Ray, so the figures are the models', not the cluster's. ``smoke=True``: tiny models, synthetic
data, a 2-second budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = ("pixelcnn", "row_lstm", "diagonal_bilstm")
MAX_REPEATS = 1  # ~14 minutes a run, and no figure here is a target: one run in the suite
EPOCH_IMAGES = 4096  # images per epoch of the budgeted training (its schedule's unit)


def _config(model: str, smoke: bool, **changes: Any) -> dict[str, Any]:
    from raysweep.search_spaces.pixel import PAPER_DEPTH

    if smoke:
        base = {"layers": 1, "hidden": 6, "head": 24, "batch_size": 16, "image_size": 8, "val_images": 64}
    else:
        base = {"layers": 3, "hidden": 32, "head": 128, "batch_size": 32, "image_size": 8, "val_images": 1000}
    # peak lr 1e-2, not the report's 3e-3: these small models learn faster with it (45 s on one busy
    # core: PixelCNN 5.65 bits/dim at 1e-2 vs 6.13 at 3e-3; Diagonal BiLSTM 5.91 vs 6.55 in 30 s)
    cfg = {"model": model, "lr": 1e-2, "grad_clip": 0.5, "seed": 0, "train_images": EPOCH_IMAGES, **base, **changes}
    if changes.get("layers") == "paper":
        cfg["layers"] = PAPER_DEPTH[model]
    return cfg


def images_per_s(model: str, smoke: bool, threads: int, steps: int = 3) -> float:
    """Training images per second at 32x32, batch 16 (paper sizes; tiny when smoke)."""
    import torch

    from raysweep.models import build_model
    from raysweep.models.masked import nll_loss
    from raysweep.trainables.pixel import model_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sizes = {"layers": 1, "hidden": 6, "head": 24} if smoke else {"layers": "paper", "hidden": 128, "head": 1024}
    net = build_model(model, **model_config(_config(model, smoke, **sizes)))
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4, alpha=0.95, eps=1e-8)
    x = torch.randint(0, 256, (16, 3, 32, 32)).float() / 255  # (B, 3, 32, 32), levels / 255
    times = []
    for i in range(1 + (1 if smoke else steps)):
        t0 = time.perf_counter()
        loss = nll_loss(net(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        opt.step()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
    return 16 / statistics.median(times)


def lossless_bpd_after(
    model: str, smoke: bool, budget_s: float, threads: int, data: str, **changes: Any
) -> tuple[float, int]:
    """(bits/dim on the lossless subset, training images seen) after ``budget_s`` of training;
    ``changes`` replace hyperparameters of the benchmark's configuration."""
    from raysweep.trainables.pixel import PixelTask
    from raysweep.training import LocalSession, TrialContext, run_trial

    ctx = TrialContext(study="pixel", data=data, epochs=1, metric="val_bpd", mode="min", patience=10**6,
                       options={"samples": 0})  # fmt: skip
    # Warm-up: the speed of this model here sets how many epochs the budget holds.
    probe = _config(model, smoke, **{**changes, "train_images": 128 if smoke else 512})
    import torch

    torch.set_num_threads(threads)
    task = PixelTask(probe, dataclasses.replace(ctx, epochs=2), torch.device("cpu"))
    task.train_epoch(0)  # first epoch warms up
    t0 = time.perf_counter()
    task.train_epoch(1)
    rate = task.steps_per_epoch * task.batch_size / (time.perf_counter() - t0)
    eval_s = 0.05 * budget_s  # per-epoch validation eats into the budget too
    epochs = max(1, int(rate * (budget_s - eval_s) / EPOCH_IMAGES))
    cfg = _config(model, smoke, **changes)
    with tempfile.TemporaryDirectory(prefix="raysweep-bench-pixel-") as tmp:
        session = LocalSession(workdir=tmp, cpus=threads)
        last = run_trial(PixelTask, cfg, dataclasses.replace(ctx, epochs=epochs), session)
    per_epoch = max(1, min(cfg["train_images"], len(task.train_idx)) // cfg["batch_size"]) * cfg["batch_size"]
    return last["lossless_bpd"], epochs * per_epoch


def measure(smoke: bool, out: dict, budget_s: float | None = None, threads: int | None = None) -> None:
    """Fill ``out`` with the figures of the module docstring (see there for what each means)."""
    threads = threads or os.cpu_count() or 1
    budget = budget_s if budget_s is not None else (2.0 if smoke else 240.0)
    data = "synthetic"
    if not smoke:
        from raysweep.data.cifar10 import CIFAR10, lossless_source
        from raysweep.data.sources import resolve_source

        data = resolve_source(None, CIFAR10)
        if lossless_source(data) is None:
            raise SystemExit("benchmarks/pixel.py needs the lossless subset: export RAYSWEEP_DATA_DIR (see README)")
    for model in MODELS:
        out[f"pixel_{model}_paper_images_per_s"] = round(images_per_s(model, smoke, threads), 3)
    for model in MODELS:
        t0 = time.perf_counter()
        bpd, images = lossless_bpd_after(model, smoke, budget, threads, data)
        out[f"pixel_{model}_lossless_bpd_budget"] = round(bpd, 4)
        out[f"pixel_{model}_budget_images"] = images
        out[f"pixel_{model}_budget_wall_s"] = round(time.perf_counter() - t0, 1)
    out["pixel_budget_s"] = budget
    out["pixel_threads"] = threads


NAME = "pixel"
FIGURES = {
    **{f"pixel_{m}_paper_images_per_s": ("img/s", f"{m} at the paper's size, 32x32, batch 16, training step")
       for m in MODELS},
    **{f"pixel_{m}_lossless_bpd_budget": ("bits/dim", f"{m}, lossless-subset bits/dim at 8x8 after the budget")
       for m in MODELS},
}  # fmt: skip


def run(bc: Any) -> Any:
    """The suite's entry: per-model budget by mode (smoke 2 s, quick 20 s, full 240 s)."""
    from benchmarks.common import Run

    out: dict[str, Any] = {}
    budget = bc.pick(2.0, 20.0, 240.0)
    measure(bc.mode == "smoke", out, budget, bc.threads)
    r = Run(figures={k: float(v) for k, v in out.items() if k in FIGURES},
            details={k: v for k, v in out.items() if k not in FIGURES})  # fmt: skip
    r.notes.append(f"budget {budget:g} s per model, {bc.threads} threads")
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/pixel.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny models on synthetic data (seconds)")
    p.add_argument("--budget-s", type=float, default=None, help="training seconds per model (default 240; smoke 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = p.parse_args(argv)
    out: dict[str, Any] = {}
    measure(args.smoke, out, args.budget_s, args.threads)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout
    sys.exit(main())
