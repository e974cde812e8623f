"""What the sweep driver hands to every trial: ``TrialContext``.

Why a module of its own: the driver builds it, and importing it must not import torch (or the
training loop); the driver stays light and fast to start, and trials import the heavy parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raysweep.tracking import TrackingInfo


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its config; picklable, handed over by the sweep driver."""

    study: str
    data: str  # resolved data source (hub id, local folder, or "synthetic")
    epochs: int
    metric: str  # validation metric that picks the best checkpoint, e.g. "val_acc"
    mode: str  # "max" or "min"
    patience: int = 5  # epochs without stop_metric improvement before early stopping
    tracking: TrackingInfo | None = None
    device: str = "auto"  # "auto", "cpu", "cuda"
    amp: str = "auto"  # "auto" (CUDA, or a CPU where a probe finds bf16 faster: training.amp), "bf16", "off"
    options: dict[str, Any] = field(default_factory=dict)  # study-specific runtime options
    run_tags: dict[str, Any] = field(default_factory=dict)  # extra tags of the trial's MLflow run
    resume_from: dict[str, str] = field(default_factory=dict)  # trial key -> checkpoint of an earlier run
    identity: dict[str, Any] = field(default_factory=dict)  # result-relevant inputs besides the config (trial key)
    stop_metric: str = "val_loss"  # reported metric that early stopping watches
    stop_mode: str = "min"  # "min" or "max": which way stop_metric improves
