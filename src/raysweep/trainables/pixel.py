"""The pixel study's trainable: PixelCNN, Row LSTM and Diagonal BiLSTM on CIFAR-10, in bits/dim.

Each Tune trial trains one ``PixelTask`` through the shared loop in its own process or, with
``--option workers=N``, fits a Ray Train ``TorchTrainer`` (``training.fit_data_parallel``): every
worker builds a ``PixelTask`` and runs the shared loop; the model trains through DDP (gloo on CPU,
NCCL with bf16 autocast on GPUs). Every optimizer step takes one global batch of ``batch_size`` images,
split evenly over the ranks; validation images are split over the ranks too, and every metric is
summed over all ranks, so each rank reports and decides (best epoch, early stop, divergence) the same.

Training follows the report: RMSprop (alpha 0.95, eps 1e-8), a one-cycle schedule peaking at
``lr`` (momentum not cycled: RMSprop's stays 0, as in the paper), gradient clipping at
``grad_clip``; 256-way softmax per sub-pixel. Per epoch: ``train_loss``/``val_loss`` (nats per
sub-pixel) and ``train_bpd``/``val_bpd``. At the end, with the best weights: ``lossless_bpd`` on
the lossless subset's test split (original pixels; the full local copy was JPEG-compressed, which
makes its bits/dim optimistic) and a grid of samples, ``samples.png``.

Images are average-pooled from 32x32 to ``image_size`` (see ``data.cifar10.downscale``); bits/dim
of smaller images are lower and compare only with runs at the same size. Runtime options:
``samples`` (images in the sample grid, default 16; 0 skips sampling, which costs 3·H·W forward
passes), ``lossless`` (a folder, or ``none``), ``val_fraction``/``split_seed`` (the validation split).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.data.cifar10 import (
    check_configs as check_images,
)
from raysweep.data.cifar10 import (
    load_cifar10,
    load_lossless_test,
    lossless_source,
    resized,
    trial_split,
)
from raysweep.metrics import bits_per_dim
from raysweep.models import build_model
from raysweep.models.masked import NUM_COLORS, nll_loss, sample, sample_grid, to_targets
from raysweep.search_spaces import SpaceError
from raysweep.search_spaces.pixel import DEFAULT_WORKERS
from raysweep.tracking import RunLogger
from raysweep.training import (
    OptimizerTaskState,
    TrialContext,
    all_reduce_sum,
    autocast,
    data_parallel,
    fit_data_parallel,
    world,
)


def train_pixel(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point (bound to ``ctx`` with ``tune.with_parameters``): a data-parallel fit."""
    fit_data_parallel(PixelTask, config, ctx)


def check_configs(configs: list[dict[str, Any]], source: str, options: dict[str, Any]) -> None:
    """Pre-flight (``Study.check_path``): every global batch splits over the Ray Train workers, and
    the images fit each configuration (``data.cifar10.check_configs``)."""
    workers = options.get("workers", DEFAULT_WORKERS)
    for c in configs:
        if int(c["batch_size"]) < workers:
            raise SpaceError(f"batch_size {c['batch_size']} is smaller than the {workers} Ray Train workers "
                             "sharing each batch; raise --set batch_size or lower --option workers")  # fmt: skip
    check_images(configs, source, options)


def model_config(config: dict[str, Any]) -> dict[str, Any]:
    """``build_model`` arguments of a trial's configuration."""
    depth = "blocks" if config["model"] == "pixelcnn" else "layers"
    return {depth: int(config["layers"]), "channels": 2 * int(config["hidden"]),
            "head_channels": int(config["head"])}  # fmt: skip


class PixelTask(OptimizerTaskState):
    def __init__(self, config: dict[str, Any], ctx: TrialContext, device: torch.device) -> None:
        self.config, self.ctx, self.device = config, ctx, device
        self.rank, self.world = world()
        self.size = int(config["image_size"])
        self.batch_size = int(config["batch_size"])
        if self.batch_size < self.world:
            raise ValueError(f"batch_size={self.batch_size} is smaller than the {self.world} workers sharing it")
        train = resized(load_cifar10(ctx.data, "train"), self.size)
        self.train_idx, val_idx = trial_split(train.labels, ctx.options)
        split_seed = int(ctx.options.get("split_seed", 0))
        val_idx = np.random.default_rng(split_seed).permutation(val_idx)[: int(config["val_images"])]
        self.val_idx = np.sort(val_idx)
        self.images: Any = train.images  # (N, S, S, 3) uint8, a memory map shared on the node
        if device.type == "cuda":  # keep the whole uint8 set where the compute is
            self.images = torch.from_numpy(np.array(train.images)).to(device)
        self.lossless = lossless_source(ctx.data, ctx.options.get("lossless"))

        self.model = build_model(config["model"], **model_config(config)).to(device)  # the bare model
        self.ddp = data_parallel(self.model)  # what trains: DDP over the ranks (the model itself alone)
        lr = float(config["lr"])
        per_epoch = min(int(config["train_images"]), len(self.train_idx))
        self.steps_per_epoch = max(1, per_epoch // self.batch_size)
        self.opt = torch.optim.RMSprop(self.model.parameters(), lr=lr, alpha=0.95, eps=1e-8)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=lr, total_steps=ctx.epochs * self.steps_per_epoch, cycle_momentum=False
        )
        self.gen = torch.Generator().manual_seed(int(config.get("seed", 0)))  # same order on every rank

    def _batch(self, idx: np.ndarray, images: Any = None) -> torch.Tensor:
        """Images ``idx`` as (B, 3, S, S) floats in [0, 1] on the training device."""
        images = self.images if images is None else images
        idx = np.sort(idx)  # sorted reads from the memory map are sequential
        if isinstance(images, torch.Tensor):
            xb = images[torch.from_numpy(idx).to(images.device)]
        else:
            xb = torch.from_numpy(np.asarray(images[idx])).to(self.device)
        return xb.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, S, S)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.ddp.train()
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen).numpy()]
        clip = float(self.config["grad_clip"])
        total, seen = 0.0, 0.0
        for step in range(self.steps_per_epoch):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            mine = np.array_split(batch, self.world)[self.rank]  # this rank's share of the global batch
            xb = self._batch(mine)
            with autocast(self.device, self.ctx.amp):
                logits = self.ddp(xb)  # (b, 256, 3, S, S)
            loss = nll_loss(logits, xb)  # nats per sub-pixel, float32
            self.opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients over the ranks
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.opt.step()
            self.sched.step()
            s, n = all_reduce_sum([loss.item() * len(mine), float(len(mine))], self.device)
            total, seen = total + s, seen + n
            if not math.isfinite(s):
                break  # diverged on some rank: all ranks stop here together, the loop marks the trial
        loss = total / seen
        return {"train_loss": loss, "train_bpd": bits_per_dim(loss), "lr": self.sched.get_last_lr()[0]}

    @torch.inference_mode()
    def _nats(self, images: Any, idx: np.ndarray) -> float:
        """Mean NLL in nats per sub-pixel of images ``idx``, shared out over the ranks."""
        self.model.eval()
        mine = idx[self.rank :: self.world]
        chunk = max(8, 16384 // (self.size * self.size))  # logits (chunk, 256, 3, S, S) stay ~50 MB
        total = 0.0
        for i in range(0, len(mine), chunk):
            xb = self._batch(mine[i : i + chunk], images)
            with autocast(self.device, self.ctx.amp):
                logits = self.model(xb)
            total += F.cross_entropy(logits.float(), to_targets(xb), reduction="sum").item()
        self.model.train()
        s, n = all_reduce_sum([total, float(len(mine) * NUM_COLORS * self.size * self.size)], self.device)
        return s / n

    def evaluate(self) -> dict[str, float]:
        loss = self._nats(self.images, self.val_idx)
        return {"val_loss": loss, "val_bpd": bits_per_dim(loss)}

    def finish(self, logger: RunLogger) -> dict[str, float]:
        """Bits/dim on the lossless subset (all ranks) and the sample grid (rank 0), best weights."""
        out: dict[str, float] = {}
        if self.lossless is not None:
            ll = resized(load_lossless_test(self.lossless), self.size)
            images = torch.from_numpy(np.array(ll.images)).to(self.device)  # a writable copy
            out["lossless_bpd"] = bits_per_dim(self._nats(images, np.arange(len(ll))))
        else:
            logger.set_tags({"raysweep.lossless": "no cifar10-lossless-subset found: set RAYSWEEP_DATA_DIR "
                                                  "or --option lossless=PATH"})  # fmt: skip
        n = int(self.ctx.options.get("samples", 16))
        if n > 0 and self.rank == 0 and logger:
            images = sample(self.model, n, self.size, device=self.device, seed=int(self.config.get("seed", 0)))
            log_sample_grid(logger, sample_grid(images))
        return out

    def model_spec(self) -> dict[str, Any]:
        return {"name": self.config["model"], "config": model_config(self.config)}


def log_sample_grid(logger: RunLogger, grid: np.ndarray, min_width: int = 256) -> None:
    """Log ``grid`` (H, W, 3) uint8 as ``samples.png``, enlarged by whole pixels to ``min_width``
    (``torchvision.io.write_png``: the uint8 pixels as they are, no float round trip)."""
    from torchvision.io import write_png

    k = max(1, math.ceil(min_width / grid.shape[1]))
    big = grid.repeat(k, axis=0).repeat(k, axis=1)  # each pixel a k x k block: nothing smoothed
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.png"
        write_png(torch.from_numpy(np.ascontiguousarray(big)).permute(2, 0, 1).contiguous(), str(path))
        logger.log_file(path)
