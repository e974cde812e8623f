"""Placement: start (or attach to) Ray, and refuse a sweep the cluster cannot place or store.

Ray itself would not refuse either: a trial whose workers never fit waits forever, and a node-local
storage path silently loses checkpoints when a trial moves. Both checks run before the sweep's
MLflow run is opened, so a refused sweep records nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from raysweep.search_spaces import SpaceError
from raysweep.studies import TrialResources
from raysweep.study import Study, not_importable

MAX_FIT = 1000  # stop counting how many trials fit at once beyond this


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start Ray in-process (or attach to ``address``) unless already up; quiet and dashboard-free."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables, our lines only
    # Inherited by the Ray processes started here. Tune runs each trial in a new thread of a reused worker,
    # and glibc gives each new thread a malloc arena of its own whose heaps it hands back to the kernel
    # and faults in again: 3x the system time of the same trainings in one thread, 0.06 s a 1-second
    # trial (BENCHMARKS.md, short trials). One arena keeps the freed pages. A cluster's nodes get it
    # from `ray start` (cluster.yaml).
    os.environ.setdefault("MALLOC_ARENA_MAX", "1")
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")  # fmt: skip


def alive_nodes() -> list[dict[str, float]]:
    """CPUs and GPUs of every alive node (what an autoscaling cluster may add is not counted)."""
    import ray

    return [{"CPU": float(n["Resources"].get("CPU", 0)), "GPU": float(n["Resources"].get("GPU", 0))}
            for n in ray.nodes() if n.get("Alive")]  # fmt: skip


def free_nodes() -> list[dict[str, float]]:
    """``alive_nodes`` less what something else holds now (``less_held``)."""
    import ray

    return less_held(alive_nodes(), {k: float(v) for k, v in ray.available_resources().items()})


def less_held(nodes: list[dict[str, float]], available: dict[str, float]) -> list[dict[str, float]]:
    """The nodes with what is held cluster-wide (their total less ``available``) taken off the largest
    first: an actor left holding 0.1 CPU of 2 would make a trial asking for both wait forever."""
    out = [dict(n) for n in nodes]
    for k in ("CPU", "GPU"):
        held = max(0.0, sum(n[k] for n in out) - available.get(k, 0.0))
        for n in sorted(out, key=lambda n: n[k], reverse=True):
            take = min(held, n[k])
            n[k] -= take
            held -= take
    return out


def bundles(res: TrialResources) -> list[dict[str, float]]:
    """The trial's own bundle and its workers', largest first (the order first-fit places them in)."""
    trial = {"CPU": float(res.trial.get("cpu", 0)), "GPU": float(res.trial.get("gpu", 0))}
    workers = [{"CPU": float(w.get("CPU", 0)), "GPU": float(w.get("GPU", 0))} for w in res.workers]
    return sorted([trial, *workers], key=lambda b: (b["GPU"], b["CPU"]), reverse=True)


def trials_that_fit(wanted: list[dict[str, float]], nodes: list[dict[str, float]]) -> int:
    """How many copies of the bundle set ``wanted`` fit ``nodes`` at once, placed first-fit."""
    free = [dict(n) for n in nodes]
    fitted = 0
    while fitted < MAX_FIT:
        for b in wanted:
            node = next((n for n in free if all(n[k] + 1e-9 >= b[k] for k in b)), None)
            if node is None:
                return fitted
            for k in b:
                node[k] -= b[k]
        fitted += 1
    return fitted


def auto_cpus(trials: int, nodes: list[dict[str, float]], gpus: float = 0.0, max_concurrent: int = 0) -> int:
    """CPUs per trial when --cpus-per-trial is not given: the most whole CPUs that still let as many
    trials run at once as would with 1 CPU each (at most ``trials``, ``max_concurrent``, the GPUs), so a
    trial gets the CPUs no other trial can use. 1 trial on 2 CPUs: 2; 3 trials on 16: 5 each."""
    at_once = min(trials_that_fit([{"CPU": 1.0, "GPU": gpus}], nodes), trials, max_concurrent or trials)
    if at_once < 1:
        return 1  # nothing fits: check_resources says so
    most = int(max((n["CPU"] for n in nodes), default=1))
    return next((c for c in range(most, 1, -1) if trials_that_fit([{"CPU": c, "GPU": gpus}], nodes) >= at_once), 1)


def check_resources(res: TrialResources) -> int:
    """How many trials (each with the workers it starts) fit the cluster at once; SpaceError if none.

    Ray would not refuse an impossible request: a trial waits for its placement, and a Ray Train
    worker group waits and retries forever.
    """
    nodes, wanted = alive_nodes(), bundles(res)
    fitted = trials_that_fit(wanted, nodes)
    if not fitted:
        need = {k: sum(b[k] for b in wanted) for k in ("CPU", "GPU")}
        what = f"{res.summary} = {need['CPU']:g} CPU/{need['GPU']:g} GPU at once" if res.workers else res.summary
        have = ", ".join(f"{n['CPU']:g} CPU/{n['GPU']:g} GPU" for n in nodes)
        raise SpaceError(f"a trial needs {what}, but this cluster cannot place it (nodes: {have}); {res.hint}")
    return fitted


def check_storage_shared(storage: str) -> None:
    """On a multi-node cluster, refuse a storage path that some node cannot see.

    Ray needs sweep state and checkpoints where every node can reach them (since Ray 2.7): a
    node-local folder would lose a trial's checkpoints when it moves to another node. A marker file
    written here must be visible from every alive node (true for NFS; URIs are trusted).
    """
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2 or "://" in storage:
        return
    Path(storage).mkdir(parents=True, exist_ok=True)
    marker = Path(storage) / f".raysweep-shared-{uuid.uuid4().hex}"
    marker.write_text("shared storage check")
    try:
        @ray.remote(num_cpus=0)
        def sees(path: str) -> bool:
            return Path(path).exists()

        refs = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(str(marker))
                for n in nodes]  # fmt: skip
        blind = [n[:8] for n, ok in zip(nodes, ray.get(refs, timeout=120), strict=True) if not ok]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise SpaceError(
            f"--storage-path {storage} is local to this node, but this is a {len(nodes)}-node cluster and "
            f"node(s) {', '.join(blind)} cannot see it; Ray keeps sweep state and checkpoints there, so use a "
            "folder every node mounts (NFS) or an s3:// / gs:// URI"
        )


def check_importable(study: Study) -> None:
    """Refuse a study whose trainable's module some node cannot import (a plugin installed only where
    the driver runs): every trial would fail with ModuleNotFoundError. Studies inside raysweep skip it."""
    module = study.trainable_path.split(":")[0]
    if module.startswith("raysweep."):
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def missing(name: str) -> str | None:  # found without running the module: no torch import here
        import importlib.util

        try:
            return None if importlib.util.find_spec(name) else name
        except ModuleNotFoundError as exc:
            return exc.name or name

    nodes = [(n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")]
    refs = [missing.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(module)
            for n, _ in nodes]  # fmt: skip
    for (_, address), gone in zip(nodes, ray.get(refs, timeout=120), strict=True):
        if gone:
            raise SpaceError(not_importable(study.name, module, gone, address))
