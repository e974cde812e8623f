"""Search spaces of the pixel study (the report's §4), and how its trials use the cluster.

Each trial trains one model. By default it trains in the Tune trial's own process, which holds
``--cpus-per-trial`` CPUs (default: those no other trial can use) and ``--gpus-per-trial`` GPUs. With
``--option workers=N`` (N >= 2) it trains data-parallel with Ray Train instead: the Tune trial only
drives a ``TorchTrainer`` and holds ``--cpus-per-trial`` (default 1 CPU, no GPU); the trainer's N
workers hold their own resources on top:

- ``--option workers=N``     Ray Train workers (DDP ranks) per trial, default 1 (no worker group:
  on one device a worker group only adds its start-up, 15-25 s a trial on a 2-core CPU);
- ``--option worker_cpus=X`` CPUs per worker (fractions allowed), default 0.5, torch threads per worker
  = max(1, floor(X)); only with N >= 2;
- ``--gpus-per-trial G``     for this study: GPUs per *worker* (0: gloo workers on CPU; > 0: NCCL
  workers, one GPU each for G = 1, bf16 autocast; a fraction only with one worker, as NCCL will
  not put two ranks on one GPU).

So on a 2-CPU machine ``--option workers=2`` needs 1 + 2 x 0.5 = 2 CPUs a trial, and on an 8-GPU node
``--option workers=8 --gpus-per-trial 1`` trains one model on all eight GPUs. A request no cluster
node can place is refused before any trial starts, and the driver runs only as many trials at once
as can have all their workers placed (Ray would otherwise wait forever for them).

``batch_size`` is the global batch: each of N workers takes an equal share of every batch, so a
configuration means the same optimisation whatever the worker count.
"""

from __future__ import annotations

from typing import Any

from raysweep.search_spaces import Dim, Hyper, Space, SpaceError
from raysweep.study import Study, TrialResources

MODELS = ("pixelcnn", "row_lstm", "diagonal_bilstm")
PAPER_DEPTH = {"pixelcnn": 15, "row_lstm": 12, "diagonal_bilstm": 7}  # the PixelRNN paper's CIFAR-10 models
TRAIN_IMAGES = 45_000  # CIFAR-10 train minus the 10% validation split
VAL_IMAGES = 5_000
DEFAULT_WORKERS = 1  # Ray Train workers per trial unless --option workers says otherwise (module doc)

HYPERS = {
    h.name: h
    for h in (
        Hyper("model", str, "pixelcnn, row_lstm or diagonal_bilstm", choices=MODELS, required=True),
        Hyper("layers", int, "PixelCNN residual blocks / Row LSTM / Diagonal BiLSTM layers (paper 15/12/7)",
              low=1, high=64, required=True),  # fmt: skip
        Hyper("hidden", int, "h: hidden units per layer; feature maps carry 2h channels (paper 128)", low=3,
              high=1024, required=True),  # fmt: skip
        Hyper("head", int, "units of the hidden 1x1 output layer (paper 1024)", low=3, high=4096, required=True),
        Hyper("lr", float, "RMSprop peak learning rate of the one-cycle schedule (per step)", low=0.0,
              low_open=True, high=1.0, required=True),  # fmt: skip
        Hyper("batch_size", int, "images per optimizer step, all Ray Train workers together", low=1,
              high=4096, required=True),  # fmt: skip
        Hyper("image_size", int, "image side in pixels: CIFAR-10's 32x32 average-pooled down",
              choices=(4, 8, 16, 32), required=True),  # fmt: skip
        Hyper("train_images", int, f"training images per epoch, a fresh random subset each ({TRAIN_IMAGES} = all)",
              low=1, required=True),  # fmt: skip
        Hyper("val_images", int, f"validation images per evaluation, a fixed subset ({VAL_IMAGES} = all)",
              low=1, required=True),  # fmt: skip
        Hyper("grad_clip", float, "max global gradient norm", low=0.0, low_open=True, required=True),
        Hyper("seed", int, "seed of init, batch order and sampling", low=0),
    )
}

_FIXED = (
    Dim("lr", (3e-3,), "fixed"),  # the report's OneCycleLR peak
    Dim("grad_clip", (0.5,), "fixed"),  # the report's clipping
    Dim("seed", (0,), "nuisance"),
)
_MODELS = Dim("model", MODELS)
# CPU-sized: 16x16 images, 2,048 images an epoch (under a minute an epoch per model on 2 cores)
_SMALL = (Dim("batch_size", (32,), "fixed"), Dim("image_size", (16,), "fixed"), Dim("train_images", (2048,), "fixed"),
          Dim("val_images", (500,), "fixed"))  # fmt: skip

SPACES = {
    s.name: s
    for s in (
        Space(
            "report_models",
            "the three models at the paper's sizes on full 32x32 CIFAR-10, as the report trained them (Table 7)",
            (
                _MODELS,
                Dim("layers", tuple(PAPER_DEPTH.values()), "fixed"),
                Dim("hidden", (128,), "fixed"),
                Dim("head", (1024,), "fixed"),
                Dim("batch_size", (16,), "fixed"),
                Dim("image_size", (32,), "fixed"),
                Dim("train_images", (TRAIN_IMAGES,), "fixed"),
                Dim("val_images", (VAL_IMAGES,), "fixed"),
            )
            + _FIXED,
            epochs=5,
            combinations=tuple({"model": m, "layers": d} for m, d in PAPER_DEPTH.items()),
        ),
        Space(
            "quick",
            "the three models, small (8x8 images, h=32, 2 layers, 4,096 images an epoch, peak lr 1e-2): under "
            "2 minutes on a 2-core CPU",
            # h=16 and 512 images an epoch at lr 3e-3 ended near 7.45 bits/dim (a uniform model: 8.0); 2,048
            # images an epoch reached 6.14-6.25, 4,096 5.82-5.91 in 85-100 s a sweep (each trial in its own
            # process, two at once)
            (
                _MODELS,
                Dim("layers", (2,), "fixed"),
                Dim("hidden", (32,), "fixed"),
                Dim("head", (128,), "fixed"),
                Dim("batch_size", (32,), "fixed"),
                Dim("image_size", (8,), "fixed"),
                Dim("train_images", (4096,), "fixed"),
                Dim("val_images", (256,), "fixed"),
                Dim("lr", (1e-2,), "fixed"),  # small models learn faster with it (benchmarks/pixel.py)
            )
            + tuple(d for d in _FIXED if d.name != "lr"),
            epochs=2,
        ),
        Space(
            "depth",
            "depth ablation: each model with 1, 2 and 4 layers (h=32, 16x16 images)",
            (_MODELS, Dim("layers", (1, 2, 4)), Dim("hidden", (32,), "fixed"), Dim("head", (128,), "fixed"))
            + _SMALL
            + _FIXED,
            epochs=3,
        ),
        Space(
            "hidden",
            "width ablation: each model with h = 16, 32 and 64 (2 layers, 16x16 images)",
            (_MODELS, Dim("layers", (2,), "fixed"), Dim("hidden", (16, 32, 64)), Dim("head", (128,), "fixed"))
            + _SMALL
            + _FIXED,
            epochs=3,
        ),
    )
}


def resources(opts: Any) -> TrialResources:
    """A pixel trial: one process (``workers`` 1), or itself (``--cpus-per-trial``) plus ``workers`` Ray
    Train workers (module doc)."""
    o = opts.options
    workers, cpus, gpus = o.get("workers", DEFAULT_WORKERS), o.get("worker_cpus", 0.5), opts.gpus_per_trial
    if isinstance(workers, bool) or not isinstance(workers, (int, float)) or workers < 1 or workers != int(workers):
        raise SpaceError(f"--option workers must be a whole number >= 1, got {workers!r}")
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0:
        raise SpaceError(f"--option worker_cpus must be a number > 0 (a fraction is fine), got {cpus!r}")
    workers = int(workers)
    if workers == 1:
        if "worker_cpus" in o:
            raise SpaceError("--option worker_cpus is for Ray Train workers (--option workers=2 or more); "
                             "a one-worker trial trains in its own process on --cpus-per-trial CPUs")  # fmt: skip
        gpu = f" + {gpus:g} GPU" if gpus else ""
        return TrialResources(
            trial={"cpu": opts.cpus_per_trial, "gpu": gpus},
            options={"workers": 1},
            summary=f"{opts.cpus_per_trial:g} CPU{gpu}, training in its own process (--option workers=N: "
            "N data-parallel Ray Train workers)",
        )
    if 0 < gpus < 1:
        raise SpaceError(f"--gpus-per-trial {gpus:g} with {workers} workers would put DDP ranks on one GPU, "
                         "which NCCL refuses; give each worker a whole GPU (--gpus-per-trial 1) or use "
                         "--option workers=1")  # fmt: skip
    worker = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}
    kind = f"{cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")
    return TrialResources(
        trial={"cpu": opts.cpus_per_trial, "gpu": 0},
        workers=(worker,) * workers,
        options={"workers": workers, "worker_cpus": float(cpus), "worker_gpus": float(gpus)},
        hint="lower --option workers / --option worker_cpus, --cpus-per-trial (the trial's own CPUs) "
        "or --gpus-per-trial (GPUs per worker for this study)",
        summary=f"{opts.cpus_per_trial:g} CPU for itself + {workers} Ray Train workers x {kind}",
    )


STUDY = Study(
    "pixel",
    "PixelCNN, Row LSTM and Diagonal BiLSTM on CIFAR-10 in bits/dim, data-parallel with Ray Train",
    trainable_path="raysweep.trainables.pixel:train_pixel",
    spaces_module=__name__,
    data_path="raysweep.data.cifar10:prepare_with_lossless",
    metric="val_bpd",
    mode="min",
    task_path="raysweep.trainables.pixel:PixelTask",
    analysis_module="raysweep.analysis.pixel",
    result_options=("lossless",),  # the other --option names only change what is logged, or how fast
    resources_path=f"{__name__}:resources",
    check_path="raysweep.trainables.pixel:check_configs",
)
