"""Data-parallel trials: a Tune trial fits a Ray Train ``TorchTrainer`` whose workers all run the
shared loop, plus the torch.distributed helpers a task uses to keep its ranks in step, and the
release of a stopped trial's worker group."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from raysweep.context import TrialContext
from raysweep.training import ray_internals
from raysweep.training.loop import Task, run_trial
from raysweep.training.sessions import TrainSession


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
    hook puts them there). One worker trains in this process, as any other study's trial does: a
    worker group of one rank would add only its start-up (15-25 s a trial on a 2-core CPU).

    The Train run is stored in this trial's own folder (a name unique to the trial, never another
    run's): when Tune restarts the trial after a failure, or a sweep is restored, Ray Train finds its
    latest checkpoint there and every rank resumes from it; a resumed sweep's new trial starts from
    ``ctx.resume_from`` (found in such a folder) instead.
    """
    workers = int(ctx.options.get("workers", 1))
    if workers == 1:
        run_trial(make_task, config, replace(ctx, run_tags={**ctx.run_tags, "raysweep.workers": 1}))
        return
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train polls its workers every 2 s by default, which a short fit() waits out several times
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    cpus, gpus = float(ctx.options.get("worker_cpus", 1.0)), float(ctx.options.get("worker_gpus", 0.0))
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
            **ray_internals.trial_storage(),  # where Tune keeps this trial: the Train run goes right there
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

    pg = ray.util.get_current_placement_group()
    if pg is not None:
        ray_internals.kv_put(_WORKER_GROUP_KEY.format(trial_id), pg.id.hex())


def release_worker_group(trial_id: str) -> bool:
    """Remove the placement group of a finished trial's Ray Train workers if it is still there.

    When Tune stops a trial (a scheduler's stop, including ASHA's at the last epoch) it kills the
    trial's process while ``fit()`` runs. Ray Train's own clean-up of the workers' placement group
    then depends on a helper that needs Ray's dashboard (absent from the in-process Ray the sweep
    starts), and the group would hold its CPUs/GPUs until the sweep ends: the next trials' workers
    would wait forever. The sweep driver calls this when each trial ends. True if it removed one.
    """
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    key = _WORKER_GROUP_KEY.format(trial_id)
    found = ray_internals.kv_get(key)
    if not found:
        return False
    ray_internals.kv_del(key)
    pg = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(found)))
    if placement_group_table(pg).get("state") in ("REMOVED", None):
        return False
    try:
        remove_placement_group(pg)
    except ray.exceptions.RaySystemError:  # removed meanwhile by Ray Train itself
        return False
    return True
