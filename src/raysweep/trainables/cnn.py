"""The CNN study's trainable: CIFAR-10 classification with the report's configurable CNN.

Adam (or SGD with Nesterov momentum: ``optimizer``) under a one-cycle learning-rate schedule,
gradient clipping, label smoothing, batched crop+flip augmentation on the training device, and
optionally mirror-averaged predictions (``eval_flip``) and, on the test set, shift-averaged ones
(``test_shift``). airbench94's recipe choices (``cnn_recipe``): a whitening first layer set from
training images only (``whiten``), BatchNorm biases at a scaled learning rate (``bn_bias_scale``),
Lookahead of the weights (``ema``) and alternating flips (``flip``). The training images stay a memory-mapped
array shared by all trials on a node (on CUDA they are copied once to the GPU, where augmentation
runs too). The training step never waits on the device: losses and accuracies are summed on it and
read once per epoch.

Runtime options (``--option NAME=VALUE``): ``val_fraction``, ``split_seed``, and ``compile``
(``torch.compile`` the training forward: 1 for inductor, or a backend name such as ``eager``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.data.augment import crop_flip_normalize, shifted, to_float
from raysweep.data.cifar10 import CLASSES, MEAN, STD, load_cifar10, trial_split
from raysweep.models import build_model
from raysweep.plots import confusion_figure
from raysweep.tracking import RunLogger
from raysweep.trainables.cnn_recipe import Lookahead, net_config, param_groups
from raysweep.training import OptimizerTaskState, TrialContext, autocast, compile_model, run_trial


def train_cnn(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point (bound to ``ctx`` with ``tune.with_parameters``)."""
    run_trial(CnnTask, config, ctx)


WHITEN_IMAGES = 5000  # training images whose 2x2 patches set the whitening layer (airbench's)


def make_optimizer(config: dict[str, Any], model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """``optimizer``: "adam" (the report's) or "sgd" (Nesterov momentum 0.9, the fast recipe's), over
    the trainable parameters, the BatchNorm biases at ``bn_bias_scale`` times the learning rate."""
    lr, wd, fused = float(config["lr"]), float(config.get("weight_decay", 0.0)), device.type == "cuda"
    params = param_groups(model, lr, wd, float(config.get("bn_bias_scale", 1.0)))
    if config.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd, fused=fused)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)


class CnnTask(OptimizerTaskState):
    def __init__(self, config: dict[str, Any], ctx: TrialContext, device: torch.device) -> None:
        self.config, self.ctx, self.device = config, ctx, device
        train = load_cifar10(ctx.data, "train")
        self.test = load_cifar10(ctx.data, "test")
        self.train_idx, self.val_idx = trial_split(train.labels, ctx.options)
        self.images, self.labels = train.images, train.labels
        if device.type == "cuda":  # keep the whole uint8 set where the compute is
            self.images = torch.from_numpy(np.ascontiguousarray(train.images)).to(device)
            self.labels = torch.from_numpy(np.asarray(train.labels)).to(device)
        self.model = build_model("cnn", **self.model_spec()["config"])
        self.model = self.model.to(device, memory_format=torch.channels_last)
        if int(config.get("whiten", 0)):  # from the training split only: no validation or test image
            self.model.init_whitening(self._batch(self.train_idx[:WHITEN_IMAGES])[0])
        self.forward = compile_model(self.model, ctx.options.get("compile"))  # training forward
        self.batch_size = int(config["batch_size"])
        self.steps_per_epoch = max(1, len(self.train_idx) // self.batch_size)
        self.opt = make_optimizer(config, self.model, device)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=[g["lr"] for g in self.opt.param_groups], total_steps=ctx.epochs * self.steps_per_epoch,
            pct_start=0.15,
        )  # fmt: skip
        self.gen = torch.Generator().manual_seed(int(config.get("seed", 0)))
        ema = float(config.get("ema", 0.0))
        self.lookahead = Lookahead(self.model, ema, ctx.epochs * self.steps_per_epoch) if ema else None
        self.flips = None  # alternating flip: per training-array image, flipped in even epochs (True) or odd ones
        if config.get("flip", "random") == "alternating":
            self.flips = (torch.rand(len(self.labels), generator=self.gen) < 0.5).to(self.images_device)

    @property
    def images_device(self) -> torch.device:
        """Where the training images (and indices into them) live: the device, or the CPU's memory map."""
        return self.device if isinstance(self.images, torch.Tensor) else torch.device("cpu")

    def _batch(self, idx: Any, images: Any = None, labels: Any = None, augment: bool = False,
               epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Images ``idx`` as a normalized float batch (B, 3, H, W), channels_last; cropped and flipped
        if ``augment`` (training images; ``epoch`` picks the alternating flips). ``idx``: numpy
        indices, or a tensor of them on the device holding the images."""
        images = self.images if images is None else images
        labels = self.labels if labels is None else labels
        if isinstance(images, torch.Tensor):  # resident on the training device
            idx = idx if isinstance(idx, torch.Tensor) else torch.from_numpy(idx).to(self.device)
            xb, yb = images[idx], labels[idx]
        else:
            idx = np.sort(idx)  # sorted reads from the memory map are sequential
            xb = torch.from_numpy(np.asarray(images[idx])).to(self.device)
            yb = torch.from_numpy(np.asarray(labels[idx])).to(self.device)
        if augment:
            flip = None if self.flips is None else self.flips[torch.as_tensor(idx)] ^ bool(epoch % 2)
            return crop_flip_normalize(xb, MEAN, STD, pad=int(self.config.get("crop_pad", 4)), generator=self.gen,
                                       flip=flip, fill=str(self.config.get("crop_fill", "zero"))), yb  # fmt: skip
        return to_float(xb, MEAN, STD), yb  # (B, 3, H, W)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        order: Any = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen).numpy()]
        if isinstance(self.images, torch.Tensor):
            order = torch.from_numpy(order).to(self.device)  # one copy per epoch, not one per step
        total_loss = torch.zeros((), device=self.device)  # summed on the device: no sync per step
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        clip = float(self.config.get("grad_clip", 1.0))
        smoothing = float(self.config.get("label_smoothing", 0.0))  # of the training loss only
        augment = bool(int(self.config.get("augment", 1)))
        if self.lookahead is not None:
            self.lookahead.start()
        for step in range(self.steps_per_epoch):
            xb, yb = self._batch(order[step * self.batch_size : (step + 1) * self.batch_size], augment=augment,
                                 epoch=epoch)  # fmt: skip
            with autocast(self.device, self.ctx.amp):
                logits = self.forward(xb)
                loss = F.cross_entropy(logits, yb, label_smoothing=smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.opt.step()
            self.sched.step()
            if self.lookahead is not None:
                self.lookahead.step(epoch * self.steps_per_epoch + step + 1)
            total_loss += loss.detach().float() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            if step % 50 == 49 and not math.isfinite(total_loss.item()):
                break  # diverged: the loop marks the trial
        if self.lookahead is not None:
            self.lookahead.finish()  # validation, checkpoints and the test see the averaged weights
        return {"train_loss": total_loss.item() / seen, "train_acc": correct.item() / seen,
                "lr": self.sched.get_last_lr()[0]}  # fmt: skip

    @torch.inference_mode()
    def _predict(self, images: Any, labels: Any, idx: np.ndarray,
                 shift: int = 0) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
        """Loss, predictions and targets of images ``idx``: logits averaged over the image, its mirror
        (``eval_flip``) and, if ``shift``, both shifted ``shift`` px up-left and down-right."""
        self.model.eval()
        flip = bool(int(self.config.get("eval_flip", 0)))
        losses, preds, targets = [], [], []
        for i in range(0, len(idx), 1000):
            xb, yb = self._batch(idx[i : i + 1000], images, labels)
            views = [xb.contiguous(memory_format=torch.channels_last)]
            if shift:
                fill = str(self.config.get("crop_fill", "zero"))  # shifted views fill as training crops did
                views += [shifted(views[0], d, fill) for d in (-shift, shift)]
            views += [v.flip(3) for v in views] if flip else []
            with autocast(self.device, self.ctx.amp):
                logits = torch.stack([self.model(v).float() for v in views]).mean(0)  # (B, classes)
            losses.append(F.cross_entropy(logits.float(), yb, reduction="sum").item())
            preds.append(logits.argmax(1).cpu().numpy())
            targets.append(yb.cpu().numpy())
        return sum(losses) / len(idx), np.concatenate(preds), np.concatenate(targets)

    def evaluate(self) -> dict[str, float]:
        loss, pred, y = self._predict(self.images, self.labels, self.val_idx)
        return {"val_loss": loss, "val_acc": float((pred == y).mean())}

    def finish(self, logger: RunLogger) -> dict[str, float]:
        """Test accuracy and loss, per-class precision/recall/F1 and the confusion matrix."""
        from sklearn.metrics import classification_report, confusion_matrix

        loss, pred, y = self._predict(self.test.images, self.test.labels, np.arange(len(self.test)),
                                      shift=int(self.config.get("test_shift", 0)))  # fmt: skip
        labels = list(range(len(CLASSES)))
        report = classification_report(y, pred, labels=labels, target_names=list(CLASSES),
                                       output_dict=True, zero_division=0)  # fmt: skip
        cm = confusion_matrix(y, pred, labels=labels)
        out = {"test_loss": loss, "test_acc": float((pred == y).mean())}
        for avg in ("macro avg", "weighted avg"):
            tag = avg.split()[0]
            for m in ("precision", "recall", "f1-score"):
                out[f"test_{m.split('-')[0]}_{tag}"] = float(report[avg][m])
        for name in CLASSES:
            for m in ("precision", "recall", "f1-score"):
                out[f"test_{m.split('-')[0]}_{name}"] = float(report[name][m])
        logger.log_dict({"classes": list(CLASSES), "report": report}, "classification_report.json")
        logger.log_text(classification_report(y, pred, labels=labels, target_names=list(CLASSES),
                                              digits=4, zero_division=0), "classification_report.txt")  # fmt: skip
        logger.log_dict({"classes": list(CLASSES), "matrix": cm.tolist()}, "confusion_matrix.json")
        logger.log_figure(lambda: confusion_figure(cm, CLASSES, out["test_acc"]), "confusion_matrix.png")
        return out

    def model_spec(self) -> dict[str, Any]:
        return {"name": "cnn", "config": net_config(self.config)}
