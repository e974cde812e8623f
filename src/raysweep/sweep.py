"""The one sweep driver: study + space + search algorithm + scheduler -> Ray Tune, tracked in MLflow.

Everything a user can get wrong is checked in ``plan_sweep`` before Ray starts. ``run_sweep`` opens
the sweep's parent MLflow run, runs one Tuner (or one per stage of a staged ablation), closes any
trial run that Ray stopped without the trial closing it, and prints a summary.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from raysweep import tracking
from raysweep.context import TrialContext
from raysweep.search_spaces import Space, SpaceError, configs_of, to_tune, validate, with_overrides
from raysweep.studies import Study, TrialResources, get_study
from raysweep.tracking import OUTCOME_TAG, TrackingInfo

OPTIONS_TAG = "raysweep.options"  # the SweepOptions as JSON, so `raysweep resume` can rebuild the plan
SEARCHES = ("grid", "random", "optuna", "qmc")
SCHEDULERS = ("fifo", "asha")


@dataclass
class SweepOptions:
    """A sweep as the user asked for it (the CLI's flags, one to one)."""

    study: str
    space: str | None = None
    data: str | None = None
    experiment: str | None = None
    tracking_uri: str | None = None
    storage_path: str | None = None
    search: str = "grid"
    scheduler: str = "fifo"
    num_samples: int = 1  # trials drawn by random/optuna/qmc (per grid point for grid)
    max_concurrent: int = 0  # 0: as many as resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    epochs: int | None = None  # None: the space's default
    seed: int = 0
    repeats: int = 1  # seeds per configuration (seed, seed+1, ...)
    patience: int = 5
    max_failures: int = 2  # retries of a trial whose worker dies, from its last checkpoint
    overrides: dict[str, str] = field(default_factory=dict)  # --set name=v1,v2
    options: dict[str, Any] = field(default_factory=dict)  # study runtime options
    address: str | None = None  # Ray cluster address; None starts Ray in-process
    name: str | None = None  # sweep name (unique per run; default study-space-time)
    device: str = "auto"
    amp: str = "auto"  # bf16 autocast: "auto" (on CUDA), "bf16" (also CPUs with AMX: ~2x), "off"
    quiet: bool = False


@dataclass
class SweepPlan:
    """A validated sweep: what will run."""

    opts: SweepOptions
    study: Study
    space: Space
    epochs: int
    name: str
    resources: TrialResources  # what each trial asks for (its own placement + the workers it starts)


@dataclass
class SweepResult:
    name: str
    tracking: TrackingInfo
    trials: list[dict[str, Any]]  # one per trial: config, metrics, score, status
    best: dict[str, Any] | None
    stage_winners: list[dict[str, Any]] = field(default_factory=list)
    status: str = "FINISHED"


def plan_sweep(opts: SweepOptions) -> SweepPlan:
    """Check everything before Ray starts; SpaceError with one line saying what is wrong."""
    study = get_study(opts.study)
    space = study.space(opts.space or study.default_space)
    space = with_overrides(space, study.hypers, opts.overrides)
    if opts.repeats > 1 or opts.seed:
        seeds = tuple(range(opts.seed, opts.seed + opts.repeats))
        space = with_overrides(space, study.hypers, {"seed": ",".join(map(str, seeds))})
        if opts.repeats > 1:  # seeds are a nuisance dimension, never a stage
            space = replace(space, dims=tuple(replace(d, role="nuisance") if d.name == "seed" else d
                                              for d in space.dims))  # fmt: skip
    validate(space, study.hypers)
    if opts.search not in SEARCHES:
        raise SpaceError(f"unknown search {opts.search!r}; choose one of {', '.join(SEARCHES)}")
    if opts.scheduler not in SCHEDULERS:
        raise SpaceError(f"unknown scheduler {opts.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if space.stages and opts.search != "grid":
        raise SpaceError(f"space {space.name!r} is a staged ablation; it runs with --search grid only")
    if space.combinations and opts.search != "grid":
        raise SpaceError(f"space {space.name!r} lists fixed combinations of values; it runs with --search grid only")
    epochs = opts.epochs if opts.epochs is not None else space.epochs
    checks = [
        (epochs >= 1, f"--epochs must be >= 1, got {epochs}"),
        (opts.num_samples >= 1, f"--num-samples must be >= 1, got {opts.num_samples}"),
        (opts.repeats >= 1, f"--repeats must be >= 1, got {opts.repeats}"),
        (opts.cpus_per_trial > 0, f"--cpus-per-trial must be > 0, got {opts.cpus_per_trial}"),
        (opts.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0, got {opts.gpus_per_trial}"),
        (opts.max_concurrent >= 0, f"--max-concurrent must be >= 0, got {opts.max_concurrent}"),
        (opts.patience >= 1, f"--patience must be >= 1, got {opts.patience}"),
        (opts.max_failures >= 0, f"--max-failures must be >= 0, got {opts.max_failures}"),
        (opts.amp in ("auto", "bf16", "off"), f"--amp must be auto, bf16 or off, got {opts.amp!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise SpaceError(msg)
    if opts.gpus_per_trial > 1 and opts.gpus_per_trial != int(opts.gpus_per_trial):
        raise SpaceError("--gpus-per-trial above 1 must be a whole number")
    name = opts.name or f"{study.name}-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return SweepPlan(opts, study, space, epochs, name, study.resources(opts))


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start Ray in-process (or attach to ``address``) unless already up; quiet and dashboard-free."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables, our lines only
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")  # fmt: skip


def run_sweep(opts: SweepOptions, trainable: Any = None, resume_run_id: str | None = None) -> SweepResult:
    """Run the sweep end to end. ``trainable`` replaces the study's (tests use a fake one).

    With ``resume_run_id`` (see ``resume_sweep``) the sweep continues under that parent run: every
    configuration with a finished trial run is not run again, and unfinished ones continue from
    their last checkpoint in the storage path. A trial's identity is its configuration (plus study,
    data and seed), so an extended space runs only what is new.
    """
    plan = plan_sweep(opts)
    study, space = plan.study, plan.space
    data, data_hash = study.prepare_data(opts.data)
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    storage = opts.storage_path or str(Path.cwd() / "ray_results")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    init_ray(opts.address)  # cluster checks come before the sweep's MLflow run: a refused sweep records nothing
    at_once = _check_resources(plan.resources)
    _check_storage_shared(storage)
    say = (lambda *a: None) if opts.quiet else (lambda *a: print(*a, flush=True))
    params = {"study": study.name, "space": space.name, "search": opts.search,
              "scheduler": opts.scheduler, "epochs": plan.epochs, "num_samples": opts.num_samples,
              "repeats": opts.repeats, "data": data, "metric": study.metric,
              "cpus_per_trial": opts.cpus_per_trial, "gpus_per_trial": opts.gpus_per_trial,
              "amp": opts.amp, "varied": ",".join(space.varied()), **plan.resources.options}  # fmt: skip
    tags = {"raysweep.study": study.name, "raysweep.space": space.name, "raysweep.search": opts.search,
            "raysweep.scheduler": opts.scheduler, "raysweep.git_commit": tracking.git_commit(),
            "raysweep.data": data, "raysweep.data_sha256": data_hash, "raysweep.storage_path": storage,
            "raysweep.sweep_name": plan.name,
            OPTIONS_TAG: json.dumps(asdict(replace(opts, name=plan.name)))}  # fmt: skip
    if resume_run_id:
        info = tracking.reopen_sweep_run(uri, resume_run_id)
        attempt = int(tracking.client(uri).get_run(resume_run_id).data.tags.get("raysweep.attempt", "0")) + 1
        tracking.RunLogger(uri, resume_run_id).set_tags({**tags, "raysweep.attempt": attempt})
    else:
        info = tracking.start_sweep_run(uri, opts.experiment or study.name, plan.name, params, tags)
        attempt = 0
    done = _recorded_trials(info, study)
    say(f"sweep {plan.name}: study {study.name}, space {space.name}, {plan.epochs} epochs per trial "
        f"({space.summary()})")
    say(f"MLflow: {uri}  experiment {opts.experiment or study.name!r}  parent run {info.parent_run_id}")
    if done:
        say(f"resuming: {len(done)} configuration(s) already finished are not run again")
    if plan.resources.workers:
        say(f"resources: each trial {plan.resources.summary}; {at_once} such trial(s) fit this cluster at once")
    fn = trainable or study.trainable()
    saved = find_checkpoints(storage, plan.name, study.name, data) if resume_run_id else {}
    ctx = TrialContext(study=study.name, data=data, epochs=plan.epochs, metric=study.metric,
                       mode=study.mode, patience=opts.patience, tracking=info, device=opts.device,
                       amp=opts.amp, options={**opts.options, **plan.resources.options},
                       resume_from={k: v["path"] for k, v in saved.items() if k not in done})  # fmt: skip
    unfinished = [v["config"] for k, v in saved.items() if k not in done]
    run = _Runner(plan, fn, ctx, storage, f"{plan.name}-r{attempt}" if attempt else plan.name, done, say)
    run.at_once = at_once
    run.unfinished = unfinished
    status = "FINISHED"
    try:
        if space.stages:
            run.staged()
        else:
            run.flat()
    except KeyboardInterrupt:
        status = "KILLED"
        say(f"interrupted; finished trials are kept. Continue with: raysweep resume {plan.name}")
    except BaseException:
        status = "FAILED"
        raise
    finally:
        trials = run.trials
        if status == "FINISHED" and any(t["status"] == "RUNNING" for t in trials):
            status = "KILLED"  # Ctrl-C: Tune stopped the trials and returned
            say(f"interrupted; finished trials are kept. Continue with: raysweep resume {plan.name}")
        parent = tracking.RunLogger(info.uri, info.parent_run_id)
        best = _best(trials, study.mode)
        try:
            _close_runs(info, trials, status)
            if best:
                parent.log_metrics({f"best_{study.metric}": best["score"],
                                    **{k: v for k, v in best["metrics"].items() if k.startswith("test_")}})  # fmt: skip
                parent.set_tags({"raysweep.best_run_id": best.get("run_id", ""),
                                 "raysweep.best_config": json.dumps(best["config"], default=str)})  # fmt: skip
            if run.winners:
                parent.log_params({f"stage{w['stage']}_{w['param']}_winner": w["value"] for w in run.winners})
                parent.log_dict({"winners": run.winners}, "stage_winners.json")
        except KeyboardInterrupt:  # a second Ctrl-C during clean-up: still close the parent truthfully
            status = "KILLED"
            raise
        finally:
            parent.end(status)
    result = SweepResult(plan.name, info, trials, best, run.winners, status)
    say(summary(result, plan))
    return result


def resume_sweep(name: str, tracking_uri: str | None = None, overrides: dict[str, str] | None = None,
                 trainable: Any = None, **changes: Any) -> SweepResult:  # fmt: skip
    """Continue sweep ``name`` (interrupted, killed, or with an extended space via ``overrides``)."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    parent = tracking.find_sweep_run(uri, name)
    if parent is None:
        raise SpaceError(f"no sweep named {name!r} in {uri}; `raysweep sweep` prints the name it runs under")
    stored = json.loads(parent.data.tags[OPTIONS_TAG])
    opts = SweepOptions(**{**stored, **changes})
    opts.overrides = {**opts.overrides, **(overrides or {})}
    opts.tracking_uri = uri
    return run_sweep(opts, trainable, resume_run_id=parent.info.run_id)


class _Runner:
    """Runs a plan's trials through Ray Tune, skipping configurations already recorded."""

    def __init__(self, plan: SweepPlan, fn: Any, ctx: TrialContext, storage: str, name: str,
                 done: dict[str, dict[str, Any]], say: Any) -> None:  # fmt: skip
        self.plan, self.fn, self.ctx, self.storage, self.name, self.say = plan, fn, ctx, storage, name, say
        self.done = done  # trial key -> record, finished before this run
        self.trials: list[dict[str, Any]] = list(done.values())
        self.winners: list[dict[str, Any]] = []
        self.unfinished: list[dict[str, Any]] = []  # configs with a checkpoint but no finished run
        self.at_once = 0  # trials whose workers all fit the cluster at once (0: Tune decides)

    def key(self, config: dict[str, Any]) -> str:
        return tracking.trial_key(self.ctx.study, self.ctx.data, config)

    def flat(self) -> None:
        space, opts = self.plan.space, self.plan.opts
        if opts.search == "grid":
            points = [c for c in configs_of(space) for _ in range(opts.num_samples)]
            todo = [c for c in points if self.key(c) not in self.done]
            if todo:
                self._tune(self.ctx, todo, len(todo), self.name)
            return
        # random / optuna / qmc: unfinished trials continue, then draw what num_samples still needs
        left = opts.num_samples - len(self.done)
        if left > 0:
            self._tune(self.ctx, self.unfinished[:left], left, self.name)

    def _tune(self, ctx: TrialContext, points: list[dict[str, Any]], num_samples: int, name: str) -> None:
        from ray import tune
        from ray.tune.search.basic_variant import BasicVariantGenerator

        plan, opts, study = self.plan, self.plan.opts, self.plan.study
        # Tune places a trial by its own request only; a trial that starts workers must not start
        # unless they fit too, or every running trial would wait forever for its workers.
        limits = [n for n in (opts.max_concurrent, self.at_once if plan.resources.workers else 0) if n]
        limit = min(limits) if limits else 0
        search_alg: Any = None
        if opts.search == "grid":  # an explicit list of points: exactly those configurations
            param_space = {d.name: tune.choice(list(d.values)) for d in plan.space.dims}
            search_alg = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=limit)
        else:
            param_space = to_tune(plan.space, opts.search)
            if opts.search in ("optuna", "qmc"):
                import optuna
                from ray.tune.search import ConcurrencyLimiter
                from ray.tune.search.optuna import OptunaSearch

                sampler = (optuna.samplers.QMCSampler(seed=opts.seed, scramble=True) if opts.search == "qmc"
                           else optuna.samplers.TPESampler(seed=opts.seed))  # fmt: skip
                search_alg = OptunaSearch(sampler=sampler, metric=study.metric, mode=study.mode,
                                          points_to_evaluate=points or None)  # fmt: skip
                if limit:
                    search_alg = ConcurrencyLimiter(search_alg, max_concurrent=limit)
            else:
                search_alg = BasicVariantGenerator(
                    points_to_evaluate=points or None, max_concurrent=limit, random_state=opts.seed
                )
        scheduler = None
        if opts.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=plan.epochs,
                                      grace_period=min(2, plan.epochs), reduction_factor=3)  # fmt: skip
        progress = progress_callback(study.metric, self.say, plan.space.varied())
        trainable = tune.with_resources(tune.with_parameters(self.fn, ctx=ctx), plan.resources.trial)
        # Tune's CSV and JSON logs only (its results read them): its default TensorBoard logger would
        # import torch into the driver and write event files per result; MLflow is the tracking here.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=study.metric, mode=study.mode, search_alg=search_alg, scheduler=scheduler,
                num_samples=num_samples, max_concurrent_trials=limit or None,
                # a trial that starts workers gets a fresh process: stopping it (ASHA, Ctrl-C) then
                # ends its trainer and workers with it, which a reused process would keep alive
                reuse_actors=not plan.resources.workers,
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=self.storage, verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                callbacks=[progress, CSVLoggerCallback(), JsonLoggerCallback()]
                + ([worker_group_releaser()] if plan.resources.workers else []),
            ),
        )  # fmt: skip
        grid = tuner.fit()
        records = [_trial_record(r, ctx, study.metric, study.mode, progress.completed) for r in grid]
        for r in records:
            r.update({k: v for k, v in ctx.run_tags.items()})
        self.trials.extend(records)

    def staged(self) -> None:
        """The staged one-factor-at-a-time ablation: each stage fixes the winners of those before it.

        A configuration already run (in an earlier stage, or before a resume) is not run again: its
        result competes in the new stage too.
        """
        space, study = self.plan.space, self.plan.study
        current = {**{d.name: d.values[0] for d in space.dims}, **space.baseline}
        seeds = list(space.dim("seed").values) if "seed" in current else [None]
        for i, factor in enumerate((None, *space.stages)):
            values = list(space.dim(factor).values) if factor else [None]
            candidates = [{**current, factor: v} if factor else dict(current) for v in values]
            ran = {_config_id(t["config"]) for t in self.trials if t["status"] != "RUNNING"}
            todo = [{**c, "seed": s} if s is not None else c for c in candidates for s in seeds
                    if _config_id(c) not in ran]  # fmt: skip
            label = factor or "baseline"
            if todo:
                self.say(f"stage {i}: {label} {values if factor else ''} (with {_fmt(current, {factor, 'seed'})})")
                stage_ctx = replace(self.ctx, run_tags={"raysweep.stage": i, "raysweep.stage_param": label})
                self._tune(stage_ctx, todo, len(todo), f"{self.name}-stage{i}")
            if factor is None:
                continue
            scored = []
            for c in candidates:
                group = [t for t in self.trials if _config_id(t["config"]) == _config_id(c)]
                scores = [t["score"] for t in group if t["score"] is not None]
                scored.append((c[factor], sum(scores) / len(scores) if scores else None, group))
            valid = [s for s in scored if s[1] is not None]
            if not valid:
                raise RuntimeError(f"stage {i}: no trial of {factor} in {values} produced {study.metric}")
            value, score, group = (max if study.mode == "max" else min)(valid, key=lambda s: s[1])
            current[factor] = value
            self.winners.append({"stage": i, "param": factor, "value": value, "score": score,
                                 "run_keys": [t["key"] for t in group]})  # fmt: skip
            self.say(f"stage {i} winner: {factor}={value} ({study.metric} {score:.4f})")


def _recorded_trials(info: TrackingInfo, study: Study) -> dict[str, dict[str, Any]]:
    """Trials of this sweep that need no rerun: finished, or diverged (a result too)."""
    out = {}
    for run in tracking.child_runs(info.uri, info):
        outcome = run.data.tags.get(OUTCOME_TAG, "")
        if run.info.status == "FINISHED" or outcome == "diverged":
            rec = _record_from_run(run, study)
            out[rec["key"]] = rec
    return out


def _record_from_run(run: Any, study: Study) -> dict[str, Any]:
    """A trial record rebuilt from its MLflow run (typed config from the study's hyperparameters)."""
    hypers = study.hypers
    config = {k: hypers[k].parse(v) for k, v in run.data.params.items() if k in hypers}
    metrics = dict(run.data.metrics)
    score = None if metrics.get("diverged") else metrics.get(f"best_{study.metric}")
    tags = run.data.tags
    rec = {"config": config, "metrics": metrics, "score": score, "key": tags.get(tracking.KEY_TAG, ""),
           "status": "TERMINATED", "error": "", "run_id": run.info.run_id}  # fmt: skip
    if "raysweep.stage" in tags:
        rec["raysweep.stage"], rec["raysweep.stage_param"] = int(tags["raysweep.stage"]), tags["raysweep.stage_param"]
    return rec


def find_checkpoints(storage: str, name: str, study: str, data: str) -> dict[str, dict[str, Any]]:
    """Latest checkpoint (path and config) of every trial of sweep ``name`` in ``storage``, by key.

    Scans the trial folders of every Tune run of the sweep (the first run, its stages, earlier
    resumes): a trial's folder holds ``params.json`` (its config) and ``checkpoint_NNNNNN/``.
    Works for local folders and for s3:// / gs:// URIs (pyarrow file systems).
    """
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(storage) if "://" in storage else (pafs.LocalFileSystem(), storage)
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    try:
        runs = [i for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory
                and (i.base_name == name or i.base_name.startswith(name + "-"))]  # fmt: skip
    except (FileNotFoundError, OSError):
        return {}
    for run in runs:
        for trial in fs.get_file_info(pafs.FileSelector(run.path)):
            if trial.type != pafs.FileType.Directory:
                continue
            entries = fs.get_file_info(pafs.FileSelector(trial.path))
            names = {e.base_name: e for e in entries}
            ckpts = sorted(n for n, e in names.items()
                           if n.startswith("checkpoint_") and e.type == pafs.FileType.Directory)  # fmt: skip
            if "params.json" not in names or not ckpts:
                continue
            with fs.open_input_stream(names["params.json"].path) as f:
                config = json.loads(f.read().decode())
            key = tracking.trial_key(study, data, config)
            path = names[ckpts[-1]].path
            uri = f"{storage.split('://')[0]}://{path}" if "://" in storage else path
            stamp = ckpts[-1] + run.base_name
            if key not in found or found[key][0] < stamp:
                found[key] = (stamp, uri, config)
    return {k: {"path": v[1], "config": v[2]} for k, v in found.items()}


def _check_storage_shared(storage: str) -> None:
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


def _check_resources(res: TrialResources) -> int:
    """How many trials (each with the workers it starts) fit the cluster at once; SpaceError if none.

    Ray would not refuse an impossible request: a trial waits for its placement, and a Ray Train
    worker group waits and retries forever. Bundles are placed first-fit, largest first, on the
    alive nodes' CPUs and GPUs (what a new node of an autoscaling cluster adds is not counted).
    """
    import ray

    nodes = [{"CPU": float(n["Resources"].get("CPU", 0)), "GPU": float(n["Resources"].get("GPU", 0))}
             for n in ray.nodes() if n.get("Alive")]  # fmt: skip
    trial = {"CPU": float(res.trial.get("cpu", 0)), "GPU": float(res.trial.get("gpu", 0))}
    bundles = sorted([trial, *({"CPU": float(w.get("CPU", 0)), "GPU": float(w.get("GPU", 0))} for w in res.workers)],
                     key=lambda b: (b["GPU"], b["CPU"]), reverse=True)  # fmt: skip
    free = [dict(n) for n in nodes]
    fitted = 0
    while fitted < 1000:
        for b in bundles:
            node = next((n for n in free if all(n[k] + 1e-9 >= b[k] for k in b)), None)
            if node is None:
                break
            for k in b:
                node[k] -= b[k]
        else:
            fitted += 1
            continue
        break
    if not fitted:
        need = {k: sum(b[k] for b in bundles) for k in ("CPU", "GPU")}
        what = f"{res.summary} = {need['CPU']:g} CPU/{need['GPU']:g} GPU at once" if res.workers else res.summary
        have = ", ".join(f"{n['CPU']:g} CPU/{n['GPU']:g} GPU" for n in nodes)
        raise SpaceError(f"a trial needs {what}, but this cluster cannot place it (nodes: {have}); {res.hint}")
    return fitted


def _trial_record(result: Any, ctx: TrialContext, metric: str, mode: str, completed: set[str]) -> dict[str, Any]:
    """A trial's config, last metrics, score (its best ``metric``), MLflow key and status:
    TERMINATED (completed, also when a scheduler stopped it), ERROR, or RUNNING (interrupted)."""
    metrics = dict(result.metrics or {})
    config = {k: v for k, v in (result.config or {}).items()}
    score = metrics.get(f"best_{metric}")
    if score is None:
        df = result.metrics_dataframe
        if df is not None and metric in df and len(df[metric].dropna()):
            score = float(df[metric].max() if mode == "max" else df[metric].min())
    if metrics.get("diverged"):
        score = None
    done = metrics.get("trial_id") in completed
    return {
        "config": config,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "score": score,
        "key": tracking.trial_key(ctx.study, ctx.data, config),
        "status": "ERROR" if result.error is not None else ("TERMINATED" if done else "RUNNING"),
        "error": str(result.error).splitlines()[0][:300] if result.error is not None else "",
    }


def _config_id(config: dict[str, Any]) -> tuple:
    """A configuration without its seed: the runs of all seeds of it form one group."""
    return tuple(sorted((k, str(v)) for k, v in config.items() if k != "seed"))


def _fmt(config: dict[str, Any], exclude: Any = frozenset()) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items() if k not in exclude)


def _best(trials: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    scored = [t for t in trials if t["score"] is not None and math.isfinite(t["score"])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda t: t["score"])


def _close_runs(info: TrackingInfo, trials: list[dict[str, Any]], sweep_status: str) -> None:
    """No trial run stays RUNNING: stopped by the scheduler -> FINISHED, errored -> FAILED,
    interrupted -> KILLED. Also attaches run ids to the trial records."""
    by_key = {t["key"]: t for t in trials}
    for run in tracking.child_runs(info.uri, info):
        t = by_key.get(run.data.tags.get(tracking.KEY_TAG, ""))
        if t is not None:
            t["run_id"] = run.info.run_id
        if run.info.status != "RUNNING":
            continue
        logger = tracking.RunLogger(info.uri, run.info.run_id)
        if t is not None and t["status"] == "TERMINATED" and sweep_status != "KILLED":
            logger.set_tags({OUTCOME_TAG: "stopped_by_scheduler"})
            logger.end("FINISHED")
        elif t is not None and t["status"] == "ERROR":
            logger.set_tags({OUTCOME_TAG: "error", tracking.REASON_TAG: t["error"]})
            logger.end("FAILED")
        else:
            logger.set_tags({OUTCOME_TAG: "interrupted"})
            logger.end("KILLED")


def summary(result: SweepResult, plan: SweepPlan) -> str:
    """The table printed at the end of a sweep."""
    metric = plan.study.metric
    lines = [f"\nsweep {result.name}: {len(result.trials)} trials, status {result.status}"]
    for w in result.stage_winners:
        lines.append(f"  stage {w['stage']} ({w['param']}): winner {w['value']}  {metric} {w['score']:.4f}")
    b = result.best
    if b:
        cfg = _fmt({k: b["config"][k] for k in plan.space.varied() if k in b["config"]}) or _fmt(b["config"])
        lines.append(f"  best config : {cfg}")
        lines.append(f"  best {metric:<7}: {b['score']:.4f}")
        if "test_acc" in b["metrics"]:
            lines.append(f"  test acc    : {b['metrics']['test_acc']:.4f}")
        for k in sorted(b["metrics"]):
            if k.startswith("test_") and k != "test_acc" and k.count("_") == 1:
                lines.append(f"  {k:<12}: {b['metrics'][k]:.4f}")
        lines.append(f"  best run    : {b.get('run_id', '?')}")
    else:
        lines.append("  no trial produced a finite metric")
    exp = plan.opts.experiment or plan.study.name
    lines.append(f"  experiment  : {exp}   parent run {result.tracking.parent_run_id}")
    lines.append(f"  tracking    : {result.tracking.uri}   (browse: raysweep ui)")
    return "\n".join(lines)


def worker_group_releaser() -> Any:
    """A Tune callback that frees a finished trial's Ray Train workers
    (``training.release_worker_group``)."""
    from ray.tune import Callback

    from raysweep.training import release_worker_group

    class Release(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            release_worker_group(trial.trial_id)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            release_worker_group(trial.trial_id)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            release_worker_group(trial.trial_id)  # before Tune restarts it

    return Release()


def progress_callback(metric: str, say: Any, varied: list[str] | None = None) -> Any:
    """A Tune callback that prints one short line per finished trial (Tune's own table is off) and
    remembers which trials completed or errored: a trial in neither set was interrupted."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self) -> None:
            self.completed: set[str] = set()
            self.errored: set[str] = set()

        def _line(self, trial: Any, what: str) -> None:
            r = trial.last_result or {}
            cfg = " ".join(f"{k}={v}" for k, v in trial.config.items() if not varied or k in varied)
            score = r.get(f"best_{metric}", r.get(metric))
            extra = f"{metric} {score:.4f}" if isinstance(score, (int, float)) else "no metric"
            if "test_acc" in r:
                extra += f"  test_acc {r['test_acc']:.4f}"
            if r.get("diverged"):
                extra = "diverged (non-finite loss)"
            say(f"[{len(self.completed) + len(self.errored)}] {trial.trial_id} {cfg} -> {extra} [{what}]")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.completed.add(trial.trial_id)
            self._line(trial, "done")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.errored.add(trial.trial_id)
            self._line(trial, "error")

    return Progress()
