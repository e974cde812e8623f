"""Where and how a trial computes: device choice, bf16 autocast, ``torch.compile``, seeding."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def pick_device(pref: str = "auto") -> torch.device:
    """CUDA when asked for or available (Ray hides GPUs a trial did not request), else CPU."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``amp="bf16"`` (and for an unresolved ``"auto"`` on CUDA). The loop resolves
    ``"auto"`` per node and model before training (``training.amp.resolve_amp``)."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: torch.nn.Module, option: Any = None) -> Callable[..., Any]:
    """The study option ``compile``: off (unset, 0, false), ``torch.compile`` with inductor (1, true),
    or with the named backend (e.g. ``eager``, ``aot_eager``: quick, for tests). The compiled module
    shares its parameters with ``model``, so checkpoints and ``state_dict`` stay those of ``model``."""
    text = str(option).strip().lower()
    if option is None or text in ("", "0", "false", "off", "no", "none"):
        return model
    backend = "inductor" if text in ("1", "true", "on", "yes", "inductor") else text
    return torch.compile(model, backend=backend)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
