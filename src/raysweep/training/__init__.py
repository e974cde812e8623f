"""Training: the one loop every study's trainable runs, and where it runs.

- ``loop``: ``run_trial`` and the ``Task`` a study implements (model, epoch, evaluation, test).
- ``sessions``: where reports and checkpoints go (``TuneSession``, ``TrainSession``, ``LocalSession``).
- ``distributed``: data-parallel trials through Ray Train (``fit_data_parallel``) and rank helpers.
- ``device``: device choice, autocast, ``torch.compile``, seeding.
- ``ray_internals``: the only home of private Ray APIs (written for Ray 2.60).

Callers import from here; the submodules are an implementation detail.
"""

from raysweep.context import TrialContext  # defined apart so that the sweep driver never imports torch
from raysweep.training.device import autocast, compile_model, pick_device, seed_everything
from raysweep.training.distributed import (
    _WORKER_GROUP_KEY,
    all_reduce_sum,
    data_parallel,
    fit_data_parallel,
    release_worker_group,
    world,
)
from raysweep.training.loop import OptimizerTaskState, Task, run_trial
from raysweep.training.sessions import LocalSession, Session, TrainSession, TuneSession

__all__ = [
    "LocalSession",
    "OptimizerTaskState",
    "Session",
    "Task",
    "TrainSession",
    "TrialContext",
    "TuneSession",
    "_WORKER_GROUP_KEY",
    "all_reduce_sum",
    "autocast",
    "compile_model",
    "data_parallel",
    "fit_data_parallel",
    "pick_device",
    "release_worker_group",
    "run_trial",
    "seed_everything",
    "world",
]
