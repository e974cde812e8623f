"""The one training-loop skeleton every study's trainable runs.

A study supplies a ``Task`` (its model, data, one training epoch, evaluation, final test); this
module owns what is the same for all of them: resuming from a checkpoint (also with zero epochs
left), per-epoch reports to Ray Tune and MLflow, checkpoints holding both the last state and the
best weights, early stopping on validation loss, divergence (NaN/inf) handling, and closing the
trial's MLflow run truthfully.

Sessions say where reports and checkpoints go: ``TuneSession`` (a Tune function trainable),
``TrainSession`` (one worker of a Ray Train ``TorchTrainer`` that a Tune trial fits, see
``fit_data_parallel``), ``LocalSession`` (a plain process). In a worker group every rank runs the
same loop; only rank 0 logs to MLflow and hands Ray Train a checkpoint, and a task keeps the ranks
in step by reducing its metrics over them (``all_reduce_sum``), so every rank decides the same.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from raysweep import tracking
from raysweep.context import TrialContext  # defined apart so that the sweep driver never imports torch
from raysweep.tracking import OUTCOME_TAG, REASON_TAG, RunLogger


class Task(Protocol):
    """What a study implements; the loop does the rest.

    Optional: ``on_epoch_end(epoch, logger)``, called after every epoch that did not diverge
    (``epoch`` counts from 1, like the metrics' step) with the trial's ``RunLogger``, before the
    best weights are loaded for ``finish``: for artifacts logged during training (samples, ...).
    """

    model: torch.nn.Module

    def train_epoch(self, epoch: int) -> dict[str, float]: ...  # must hold "train_loss"

    def evaluate(self) -> dict[str, float]: ...  # validation metrics, must hold "val_loss"

    def state_dict(self) -> dict[str, Any]: ...  # model, optimizer, scheduler, RNG

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def finish(self, logger: RunLogger) -> dict[str, float]: ...  # test metrics, best weights loaded

    def model_spec(self) -> dict[str, Any]: ...  # {"name": ..., "config": {...}} for build_model


class Session(Protocol):
    """Where reports and checkpoints go: Ray Tune, a Ray Train worker, or a plain process."""

    rank: int

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


class OptimizerTaskState:
    """``state_dict``/``load_state_dict`` for a Task holding ``model``, ``opt``, ``sched`` and a
    ``gen`` (torch.Generator of its batch order and augmentation): all a resumed trial needs."""

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "gen": self.gen.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"])


class TuneSession:
    """A Ray Tune function trainable's session."""

    rank = 0

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
        tune.report(metrics, checkpoint=ckpt)

    def num_cpus(self) -> int:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        return max(1, int(cpus))

    def device(self, pref: str) -> torch.device:
        return pick_device(pref)


class TrainSession:
    """One Ray Train worker of a trial's TorchTrainer: reports reach the Tune trial through
    ``TuneReportCallback``; checkpoints go to the Train run (which lives in the trial's folder).

    Every rank must call ``report`` the same number of times (Ray Train's barrier); only rank 0
    passes its checkpoint, the others' would be merged into the same folder.
    """

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
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        return max(1, int(cpus))

    def device(self, pref: str) -> torch.device:
        if pref == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        from ray.train.torch import get_device

        return get_device()  # this rank's GPU (cuda:0 is not it when workers share a node)


class LocalSession:
    """Runs a trial in the current process (benchmarks' bare baseline, unit tests)."""

    rank = 0

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


def pick_device(pref: str = "auto") -> torch.device:
    """CUDA when asked for or available (Ray hides GPUs a trial did not request), else CPU."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA by default; on CPU only when asked (it is slower on most CPUs)."""
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


def world() -> tuple[int, int]:
    """(rank, world size) of this process's torch.distributed group; (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over all ranks (the values themselves outside a group)."""
    if world()[1] == 1:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def data_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` wrapped for DDP by Ray Train when this process is one of several ranks, else itself.

    Train through the wrapper; keep the bare model as the task's ``model`` (state dicts without the
    ``module.`` prefix, and evaluation/sampling that no other rank has to join).
    """
    if world()[1] == 1:
        return model
    from ray.train.torch import prepare_model

    return prepare_model(model, move_to_device=False, parallel_strategy_kwargs={"broadcast_buffers": False})


def fit_data_parallel(
    make_task: Callable[[dict[str, Any], TrialContext, torch.device], Task],
    config: dict[str, Any],
    ctx: TrialContext,
) -> None:
    """A Tune trial that trains data-parallel: it fits a Ray Train ``TorchTrainer`` whose workers
    each run ``run_trial`` with a ``TrainSession``; their reports reach Tune per epoch.

    Workers: ``ctx.options`` ``workers``, ``worker_cpus``, ``worker_gpus`` (the study's resources
    hook puts them there). The Train run is stored in this trial's own folder (a name unique to
    the trial, never another run's): when Tune restarts the trial after a failure, or a sweep is
    restored, Ray Train finds its latest checkpoint there and every rank resumes from it; a
    resumed sweep's new trial starts from ``ctx.resume_from`` (found in such a folder) instead.
    """
    import ray.train
    from ray import tune
    from ray.train._internal.session import get_session
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train polls its workers every 2 s by default, which a short fit() waits out several times
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    workers, cpus = int(ctx.options.get("workers", 1)), float(ctx.options.get("worker_cpus", 1.0))
    gpus = float(ctx.options.get("worker_gpus", 0.0))
    storage = get_session().storage  # where Tune keeps this trial: the Train run goes right there
    name, trial_id = tune.get_context().get_trial_name(), tune.get_context().get_trial_id()
    ctx = replace(ctx, run_tags={**ctx.run_tags, "raysweep.workers": workers, "raysweep.worker_cpus": cpus,
                                 "raysweep.worker_gpus": gpus})  # fmt: skip
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"make_task": make_task, "config": config, "ctx": ctx, "name": name, "trial_id": trial_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=gpus > 0, resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        ),
        run_config=ray.train.RunConfig(
            name=storage.trial_dir_name,
            storage_path=f"{storage.storage_fs_path.rstrip('/')}/{storage.experiment_dir_name}",
            storage_filesystem=storage.storage_filesystem,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries the whole trial
        ),
    )  # fmt: skip
    trainer.fit()


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the study's task through the shared loop."""
    session = TrainSession(loop_config["name"])
    if session.rank == 0:
        _record_worker_group(loop_config["trial_id"])
    run_trial(loop_config["make_task"], loop_config["config"], loop_config["ctx"], session)


_WORKER_GROUP_KEY = "raysweep:train-workers:{}"  # Ray's internal KV: a trial's worker-group placement group


def _record_worker_group(trial_id: str) -> None:
    """Remember the placement group of this trial's Ray Train workers (see ``release_worker_group``)."""
    import ray
    from ray.experimental.internal_kv import _internal_kv_put

    pg = ray.util.get_current_placement_group()
    if pg is not None:
        _internal_kv_put(_WORKER_GROUP_KEY.format(trial_id), pg.id.hex(), overwrite=True)


def release_worker_group(trial_id: str) -> bool:
    """Remove the placement group of a finished trial's Ray Train workers if it is still there.

    When Tune stops a trial (a scheduler's stop, including ASHA's at the last epoch) it kills the
    trial's process while ``fit()`` runs. Ray Train's own clean-up of the workers' placement group
    then depends on a helper that needs Ray's dashboard (absent from the in-process Ray the sweep
    starts), and the group would hold its CPUs/GPUs until the sweep ends: the next trials' workers
    would wait forever. The sweep driver calls this when each trial ends. True if it removed one.
    """
    import ray
    from ray._raylet import PlacementGroupID
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    key = _WORKER_GROUP_KEY.format(trial_id)
    found = _internal_kv_get(key)
    if not found:
        return False
    _internal_kv_del(key)
    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(found.decode())))
    if placement_group_table(pg).get("state") in ("REMOVED", None):
        return False
    try:
        remove_placement_group(pg)
    except ray.exceptions.RaySystemError:  # removed meanwhile by Ray Train itself
        return False
    return True


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value > best if mode == "max" else value < best


def run_trial(
    make_task: Callable[[dict[str, Any], TrialContext, torch.device], Task],
    config: dict[str, Any],
    ctx: TrialContext,
    session: Session | None = None,
) -> dict[str, float]:
    """Train one configuration to the end (or early stop / divergence); returns the last metrics."""
    session = session or TuneSession()
    torch.set_num_threads(session.num_cpus())
    device = session.device(ctx.device)
    logger = RunLogger.disabled()
    key = tracking.trial_key(ctx.study, ctx.data, config)
    if ctx.tracking is not None and session.rank == 0:
        logger = tracking.open_trial_run(
            ctx.tracking, session.trial_name(), key, {"raysweep.study": ctx.study, **ctx.run_tags}
        )
    try:
        last = _train(make_task, config, ctx, session, device, logger, ctx.resume_from.get(key))
    except BaseException as exc:
        if logger.ended:  # stopped after the run was closed (while reporting the last epoch)
            raise
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        logger.set_tags({OUTCOME_TAG: "killed" if interrupted else "error", REASON_TAG: repr(exc)[:500]})
        logger.end("KILLED" if interrupted else "FAILED")
        raise
    return last


def _train(
    make_task: Callable[[dict[str, Any], TrialContext, torch.device], Task],
    config: dict[str, Any],
    ctx: TrialContext,
    session: Session,
    device: torch.device,
    logger: RunLogger,
    earlier_checkpoint: str | None = None,
) -> dict[str, float]:
    seed_everything(int(config.get("seed", 0)))
    task = make_task(config, ctx, device)
    num_params = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    options = {f"option.{k}": v for k, v in ctx.options.items()}  # runtime options leave a trace too
    logger.log_params({**config, "epochs": ctx.epochs, "data": ctx.data, "device": device.type, "amp": ctx.amp,
                       **options})  # fmt: skip
    logger.log_metrics({"num_params": num_params})

    loop: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": 0, "best_val_loss": None,
                            "stale": 0, "done": False, "last": {}}  # fmt: skip
    best_state: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        ckpt = stack.enter_context(session.checkpoint_dir())
        if ckpt is None and earlier_checkpoint:  # resumed sweep: this config's last checkpoint
            from ray import tune

            ckpt = stack.enter_context(tune.Checkpoint(earlier_checkpoint).as_directory())
        if ckpt is not None:
            saved = torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=False)
            task.load_state_dict(saved["task"])
            loop = saved["loop"]
            best_state = torch.load(Path(ckpt) / "best_model.pt", map_location="cpu")
    if loop["done"]:  # resumed after the last epoch: nothing to train, report what was measured
        session.report(loop["last"], None)
        logger.end("FINISHED")
        return loop["last"]

    metric = ctx.metric
    for epoch in range(loop["epoch"], ctx.epochs):
        t0 = time.perf_counter()
        train = task.train_epoch(epoch)
        val = task.evaluate()
        metrics = {"epoch": epoch + 1, **train, **val, "num_params": num_params,
                   "epoch_time_s": time.perf_counter() - t0}  # fmt: skip
        losses = [metrics.get("train_loss", 0.0), metrics.get("val_loss", 0.0)]
        if not all(math.isfinite(v) for v in losses):
            reason = f"non-finite loss at epoch {epoch + 1} (train {losses[0]}, val {losses[1]})"
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
            metrics["diverged"] = 1.0
            logger.log_metrics(metrics, step=epoch + 1)
            logger.set_tags({OUTCOME_TAG: "diverged", REASON_TAG: reason})
            logger.end("FAILED")
            session.report(metrics, None)
            return metrics
        on_epoch_end = getattr(task, "on_epoch_end", None)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, logger)
        if _better(metrics[metric], loop["best"], ctx.mode):
            loop["best"], loop["best_epoch"] = metrics[metric], epoch + 1
            best_state = _cpu_copy(task.model.state_dict())
        if loop["best_val_loss"] is None or metrics["val_loss"] < loop["best_val_loss"]:
            loop["best_val_loss"], loop["stale"] = metrics["val_loss"], 0
        else:
            loop["stale"] += 1
        early = loop["stale"] >= ctx.patience
        last_epoch = early or epoch + 1 == ctx.epochs
        metrics[f"best_{metric}"] = loop["best"]
        metrics["best_epoch"] = loop["best_epoch"]
        if last_epoch:
            task.model.load_state_dict(best_state)
            final = task.finish(logger)
            metrics.update(final)
            logger.log_torch_state(best_state, "model/best.pt")
            logger.log_dict(task.model_spec(), "model/spec.json")
        loop.update(epoch=epoch + 1, done=last_epoch, last=metrics)
        logger.log_metrics(metrics, step=epoch + 1)
        with tempfile.TemporaryDirectory(prefix="raysweep-ckpt-") as tmp:
            torch.save({"task": task.state_dict(), "loop": loop}, Path(tmp) / "state.pt")
            torch.save(best_state, Path(tmp) / "best_model.pt")
            if last_epoch:
                logger.set_tags({OUTCOME_TAG: "early_stopped" if early and epoch + 1 < ctx.epochs
                                 else "completed"})  # fmt: skip
                logger.end("FINISHED")
            session.report(metrics, tmp)
        if last_epoch:
            break
    return loop["last"]
