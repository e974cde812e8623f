"""The CNN study's trainable: CIFAR-10 classification with the report's configurable CNN.

Adam (or SGD with Nesterov momentum: ``optimizer``) under a one-cycle learning-rate schedule,
gradient clipping, label smoothing, batched crop+flip augmentation on the training device, and
optionally mirror-averaged predictions (``eval_flip``) and, on the test set, shift-averaged ones
(``test_shift``). The training images stay a memory-mapped
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
from raysweep.models.cnn import DROPOUT
from raysweep.plots import confusion_figure
from raysweep.tracking import RunLogger
from raysweep.training import OptimizerTaskState, TrialContext, autocast, compile_model, run_trial


def train_cnn(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point (bound to ``ctx`` with ``tune.with_parameters``)."""
    run_trial(CnnTask, config, ctx)


def make_optimizer(config: dict[str, Any], model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """``optimizer``: "adam" (the report's) or "sgd" (Nesterov momentum 0.9, the fast recipe's)."""
    lr, wd, fused = float(config["lr"]), float(config.get("weight_decay", 0.0)), device.type == "cuda"
    if config.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd, fused=fused)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd, fused=fused)


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
        self.forward = compile_model(self.model, ctx.options.get("compile"))  # training forward
        self.batch_size = int(config["batch_size"])
        self.steps_per_epoch = max(1, len(self.train_idx) // self.batch_size)
        self.opt = make_optimizer(config, self.model, device)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=float(config["lr"]), total_steps=ctx.epochs * self.steps_per_epoch,
            pct_start=0.15,
        )  # fmt: skip
        self.gen = torch.Generator().manual_seed(int(config.get("seed", 0)))

    def _batch(self, idx: Any, images: Any = None, labels: Any = None,
               augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Images ``idx`` as a normalized float batch (B, 3, H, W), channels_last; cropped and flipped
        if ``augment``. ``idx``: numpy indices, or a tensor of them on the device holding the images."""
        images = self.images if images is None else images
        labels = self.labels if labels is None else labels
        if isinstance(images, torch.Tensor):  # resident on the training device
            t = idx if isinstance(idx, torch.Tensor) else torch.from_numpy(idx).to(self.device)
            xb, yb = images[t], labels[t]
        else:
            idx = np.sort(idx)  # sorted reads from the memory map are sequential
            xb = torch.from_numpy(np.asarray(images[idx])).to(self.device)
            yb = torch.from_numpy(np.asarray(labels[idx])).to(self.device)
        if augment:
            return crop_flip_normalize(xb, MEAN, STD, pad=4, generator=self.gen), yb
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
        for step in range(self.steps_per_epoch):
            xb, yb = self._batch(order[step * self.batch_size : (step + 1) * self.batch_size], augment=augment)
            with autocast(self.device, self.ctx.amp):
                logits = self.forward(xb)
                loss = F.cross_entropy(logits, yb, label_smoothing=smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.opt.step()
            self.sched.step()
            total_loss += loss.detach().float() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            if step % 50 == 49 and not math.isfinite(total_loss.item()):
                break  # diverged: the loop marks the trial
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
                views += [shifted(views[0], d) for d in (-shift, shift)]
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
        return {"name": "cnn", "config": {"filters": int(self.config["filters"]), "layers": int(self.config["layers"]),
                                          "dropout": float(self.config.get("dropout", DROPOUT))}}  # fmt: skip
