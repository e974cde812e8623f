"""Where a trial's reports and checkpoints go: Ray Tune, one Ray Train worker, or a plain process.

In a worker group every rank runs the same loop; only rank 0 hands Ray Train a checkpoint (and
logs to MLflow, see ``loop``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from raysweep.training.device import pick_device


class Session(Protocol):
    """Where reports and checkpoints go: Ray Tune, a Ray Train worker, or a plain process."""

    rank: int
    stopped: bool  # Ray stopped this trial in ``report`` (a scheduler's decision, or the sweep's interrupt)

    def trial_name(self) -> str: ...

    def checkpoint_dir(self) -> contextlib.AbstractContextManager[str | None]: ...

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None: ...

    def num_cpus(self) -> int: ...

    def device(self, pref: str) -> torch.device: ...  # where this process trains ("auto", "cpu", "cuda")


@contextlib.contextmanager
def _as_directory(ckpt: Any) -> Iterator[str | None]:
    """A Ray checkpoint as a local folder for the block (None when there is none)."""
    if ckpt is None:
        yield None
        return
    with ckpt.as_directory() as d:
        yield d


def _assigned_cpus() -> int:
    """The CPUs Ray gave this process (at least 1)."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(cpus))


class TuneSession:
    """A Ray Tune function trainable's session."""

    rank = 0
    stopped = False

    def trial_name(self) -> str:
        from ray import tune

        return tune.get_context().get_trial_name()

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        from ray import tune

        with _as_directory(tune.get_checkpoint()) as d:
            yield d

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        from ray import tune

        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        try:
            tune.report(metrics, checkpoint=ckpt)
        except SystemExit:  # Tune's stop: report() exits the training thread while the actor shuts down
            self.stopped = True
            raise

    def num_cpus(self) -> int:
        return _assigned_cpus()

    def device(self, pref: str) -> torch.device:
        return pick_device(pref)


class TrainSession:
    """One Ray Train worker of a trial's TorchTrainer: reports reach the Tune trial through
    ``TuneReportCallback``; checkpoints go to the Train run (which lives in the trial's folder).
    A stopped trial's workers are killed with its Train run, so ``stopped`` never turns true here.

    Every rank must call ``report`` the same number of times (Ray Train's barrier); only rank 0
    passes its checkpoint, the others' would be merged into the same folder.
    """

    stopped = False

    def __init__(self, name: str) -> None:
        import ray.train

        c = ray.train.get_context()
        self.name = name
        self.rank = c.get_world_rank()
        self.world_size = c.get_world_size()

    def trial_name(self) -> str:
        return self.name

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        import ray.train

        with _as_directory(ray.train.get_checkpoint()) as d:  # the same one on every rank
            yield d

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir and self.rank == 0 else None
        ray.train.report(metrics, checkpoint=ckpt)

    def num_cpus(self) -> int:
        return _assigned_cpus()

    def device(self, pref: str) -> torch.device:
        if pref == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        from ray.train.torch import get_device

        return get_device()  # this rank's GPU (cuda:0 is not it when workers share a node)


class LocalSession:
    """Runs a trial in the current process (benchmarks' bare baseline, unit tests)."""

    rank = 0
    stopped = False

    def __init__(self, name: str = "local", workdir: str | None = None, cpus: int | None = None):
        self.name = name
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="raysweep-local-"))
        self.cpus = cpus or os.cpu_count() or 1
        self.results: list[dict[str, float]] = []

    def trial_name(self) -> str:
        return self.name

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        ckpt = self.dir / "checkpoint"
        yield str(ckpt) if ckpt.exists() else None

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        self.results.append(dict(metrics))
        if checkpoint_dir:
            dest = self.dir / "checkpoint"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(checkpoint_dir, dest)

    def num_cpus(self) -> int:
        return self.cpus

    def device(self, pref: str) -> torch.device:
        return pick_device(pref)
