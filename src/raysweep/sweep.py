"""The one sweep driver: study + space + search algorithm + scheduler -> Ray Tune, tracked in MLflow.

Everything a user can get wrong is checked in ``plan_sweep`` before Ray starts. ``run_sweep`` opens
the sweep's parent MLflow run, runs one Tuner (or one per stage of a staged ablation), closes any
trial run that Ray stopped without the trial closing it, and prints a summary.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from raysweep import tracking
from raysweep.context import TrialContext
from raysweep.search_spaces import Space, SpaceError, to_tune, validate, with_overrides
from raysweep.studies import Study, get_study
from raysweep.tracking import OUTCOME_TAG, TrackingInfo

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
    return SweepPlan(opts, study, space, epochs, name)


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start Ray in-process (or attach to ``address``) unless already up; quiet and dashboard-free."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")  # fmt: skip


def run_sweep(opts: SweepOptions, trainable: Any = None) -> SweepResult:
    """Run the sweep end to end. ``trainable`` replaces the study's (tests use a fake one)."""
    plan = plan_sweep(opts)
    study, space = plan.study, plan.space
    data, data_hash = prepare_data(study.name, opts.data)
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    storage = str(Path(opts.storage_path or Path.cwd() / "ray_results").expanduser())
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    info = tracking.start_sweep_run(
        uri, opts.experiment or study.name, plan.name,
        params={"study": study.name, "space": space.name, "search": opts.search,
                "scheduler": opts.scheduler, "epochs": plan.epochs, "num_samples": opts.num_samples,
                "repeats": opts.repeats, "data": data, "metric": study.metric,
                "cpus_per_trial": opts.cpus_per_trial, "gpus_per_trial": opts.gpus_per_trial,
                "amp": opts.amp, "varied": ",".join(space.varied())},
        tags={"raysweep.study": study.name, "raysweep.space": space.name,
              "raysweep.search": opts.search, "raysweep.scheduler": opts.scheduler,
              "raysweep.git_commit": tracking.git_commit(), "raysweep.data": data,
              "raysweep.data_sha256": data_hash, "raysweep.storage_path": storage,
              "raysweep.sweep_name": plan.name},
    )  # fmt: skip
    say = (lambda *a: None) if opts.quiet else (lambda *a: print(*a, flush=True))
    say(f"sweep {plan.name}: study {study.name}, space {space.name} ({space.summary()})")
    say(f"MLflow: {uri}  experiment {opts.experiment or study.name!r}  parent run {info.parent_run_id}")
    init_ray(opts.address)
    _check_resources(opts)
    fn = trainable or study.trainable()
    ctx = TrialContext(study=study.name, data=data, epochs=plan.epochs, metric=study.metric,
                       mode=study.mode, patience=opts.patience, tracking=info, device=opts.device,
                       amp=opts.amp, options=dict(opts.options))  # fmt: skip
    status = "FINISHED"
    trials: list[dict[str, Any]] = []
    winners: list[dict[str, Any]] = []
    try:
        if space.stages:
            trials, winners = _run_staged(plan, fn, ctx, storage, say)
        else:
            trials = _run_tuner(plan, fn, ctx, to_tune(space, opts.search), storage, plan.name, say)
    except KeyboardInterrupt:
        status = "KILLED"
        say(f"interrupted; finished trials are kept. Continue with: raysweep resume {plan.name}")
    except BaseException:
        status = "FAILED"
        raise
    finally:
        _close_runs(info, trials, status)
        parent = tracking.RunLogger(info.uri, info.parent_run_id)
        best = _best(trials, study.mode)
        if best:
            parent.log_metrics({f"best_{study.metric}": best["score"],
                                **{k: v for k, v in best["metrics"].items() if k.startswith("test_")}})  # fmt: skip
            parent.set_tags({"raysweep.best_run_id": best.get("run_id", ""),
                             "raysweep.best_config": best["config"]})  # fmt: skip
        if any(t["status"] == "RUNNING" for t in trials) and status == "FINISHED":
            status = "KILLED"
        parent.end(status)
    result = SweepResult(plan.name, info, trials, best, winners, status)
    say(summary(result, plan))
    return result


def prepare_data(study: str, data: str | None) -> tuple[str, str]:
    """Resolve and decode the study's data once on the driver's node; (source, content hash)."""
    if study == "cnn":
        from raysweep.data.cifar10 import load_cifar10

        train = load_cifar10(data, "train")
        test = load_cifar10(data, "test")
        return train.source, f"{train.content_sha256[:16]}+{test.content_sha256[:16]}"
    raise SpaceError(f"no data loader for study {study!r}")


def _check_resources(opts: SweepOptions) -> None:
    """Refuse a per-trial request no node can ever satisfy (Ray would wait forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fits = any(r.get("CPU", 0) >= opts.cpus_per_trial and r.get("GPU", 0) >= opts.gpus_per_trial
               for r in nodes)  # fmt: skip
    if not fits:
        have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes)
        raise SpaceError(
            f"a trial asks for {opts.cpus_per_trial:g} CPU and {opts.gpus_per_trial:g} GPU, but no "
            f"node has that much (nodes: {have}); lower --cpus-per-trial/--gpus-per-trial"
        )


def _run_tuner(plan: SweepPlan, fn: Any, ctx: TrialContext, param_space: dict[str, Any],
               storage: str, name: str, say: Any) -> list[dict[str, Any]]:  # fmt: skip
    """One Ray Tune run; returns a record per trial."""
    from ray import tune

    opts, study = plan.opts, plan.study
    search_alg = None
    if opts.search in ("optuna", "qmc"):
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        sampler = (optuna.samplers.QMCSampler(seed=opts.seed, scramble=True) if opts.search == "qmc"
                   else optuna.samplers.TPESampler(seed=opts.seed))  # fmt: skip
        search_alg = OptunaSearch(sampler=sampler, metric=study.metric, mode=study.mode)
        if opts.max_concurrent:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=opts.max_concurrent)
    scheduler = None
    if opts.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=plan.epochs,
                                  grace_period=min(2, plan.epochs), reduction_factor=3)  # fmt: skip
    trainable = tune.with_resources(
        tune.with_parameters(fn, ctx=ctx), {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
    )
    # Tune's CSV and JSON logs only (its results read them): its default TensorBoard logger would
    # import torch into the driver and write event files per result; MLflow is the tracking here.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=study.metric, mode=study.mode, search_alg=search_alg, scheduler=scheduler,
            num_samples=opts.num_samples, max_concurrent_trials=opts.max_concurrent or None,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            callbacks=[ProgressCallback(study.metric, say), CSVLoggerCallback(), JsonLoggerCallback()],
        ),
    )  # fmt: skip
    grid = tuner.fit()
    return [_trial_record(r, ctx, study.metric, study.mode) for r in grid]


def _trial_record(result: Any, ctx: TrialContext, metric: str, mode: str) -> dict[str, Any]:
    """A trial's config, last metrics, score (its best ``metric``) and MLflow key."""
    metrics = dict(result.metrics or {})
    config = {k: v for k, v in (result.config or {}).items()}
    score = metrics.get(f"best_{metric}")
    if score is None:
        df = result.metrics_dataframe
        if df is not None and metric in df and len(df[metric].dropna()):
            score = float(df[metric].max() if mode == "max" else df[metric].min())
    if metrics.get("diverged"):
        score = None
    done = bool(metrics.get("done")) or result.error is None and bool(metrics)
    return {
        "config": config,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "score": score,
        "key": tracking.trial_key(ctx.study, ctx.data, config),
        "status": "ERROR" if result.error is not None else ("TERMINATED" if done else "RUNNING"),
        "error": str(result.error).splitlines()[0][:300] if result.error is not None else "",
    }


def _run_staged(plan: SweepPlan, fn: Any, ctx: TrialContext, storage: str,
                say: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """The staged one-factor-at-a-time ablation: each stage fixes the winners of those before it.

    A configuration already run in an earlier stage (the baseline value of the stage's factor) is
    not run again: its result competes in the new stage too.
    """
    space, study = plan.space, plan.study
    fixed = {d.name: d.values[0] for d in space.dims if len(d.values) == 1}
    seeds = space.dim("seed").values if "seed" in [d.name for d in space.dims] else (None,)
    current = {**fixed, **space.baseline}
    all_trials: list[dict[str, Any]] = []
    winners: list[dict[str, Any]] = []

    def group_score(records: list[dict[str, Any]]) -> float | None:
        scores = [r["score"] for r in records if r["score"] is not None]
        return sum(scores) / len(scores) if scores else None

    def run_stage(i: int, factor: str | None, values: list[Any]) -> None:
        ran = {_config_id(t["config"]) for t in all_trials}
        candidates = [{**current, factor: v} if factor else dict(current) for v in values]
        todo = [c for c in candidates if _config_id(c) not in ran]
        if todo:
            param_space = dict(current)
            if factor:
                param_space[factor] = _grid([c[factor] for c in todo])
            if seeds[0] is not None:
                param_space["seed"] = _grid(list(seeds))
            label = factor or "baseline"
            stage_ctx = replace(ctx, run_tags={"raysweep.stage": i, "raysweep.stage_param": label})
            say(f"stage {i}: {label} {values if factor else ''} (with {_fmt(current, {factor, 'seed'})})")
            for t in _run_tuner(plan, fn, stage_ctx, param_space, storage, f"{plan.name}-stage{i}", say):
                t["stage"], t["stage_param"] = i, label
                all_trials.append(t)
        if factor is None:
            return
        scored = []
        for c in candidates:
            group = [t for t in all_trials if _config_id(t["config"]) == _config_id(c)]
            scored.append((c[factor], group_score(group), group))
        valid = [s for s in scored if s[1] is not None]
        if not valid:
            raise RuntimeError(f"stage {i}: no trial of {factor} in {values} produced {study.metric}")
        pick = max if study.mode == "max" else min
        value, score, group = pick(valid, key=lambda s: s[1])
        current[factor] = value
        winners.append({"stage": i, "param": factor, "value": value, "score": score,
                        "run_keys": [t["key"] for t in group]})  # fmt: skip
        say(f"stage {i} winner: {factor}={value} ({study.metric} {score:.4f})")

    run_stage(0, None, [None])
    for i, factor in enumerate(space.stages, start=1):
        run_stage(i, factor, list(space.dim(factor).values))
    parent = tracking.RunLogger(ctx.tracking.uri, ctx.tracking.parent_run_id) if ctx.tracking else None
    if parent:
        parent.log_params({f"stage{w['stage']}_{w['param']}_winner": w["value"] for w in winners})
        parent.log_dict({"winners": winners}, "stage_winners.json")
    return all_trials, winners


def _grid(values: list[Any]) -> Any:
    from ray import tune

    return tune.grid_search(values)


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


class ProgressCallback:
    """Prints one short line per finished trial (Tune's own table is off)."""

    def __new__(cls, metric: str, say: Any):  # build a real tune.Callback lazily (Ray import)
        from ray.tune import Callback

        class _Progress(Callback):
            def __init__(self) -> None:
                self.done = 0

            def _line(self, trial: Any, what: str) -> None:
                self.done += 1
                r = trial.last_result or {}
                cfg = " ".join(f"{k}={v}" for k, v in trial.config.items())
                score = r.get(f"best_{metric}", r.get(metric))
                extra = f"{metric} {score:.4f}" if isinstance(score, (int, float)) else "no metric"
                if "test_acc" in r:
                    extra += f"  test_acc {r['test_acc']:.4f}"
                if r.get("diverged"):
                    extra = "diverged (non-finite loss)"
                say(f"[{self.done}] {trial.trial_id} {cfg} -> {extra} [{what}]")

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self._line(trial, "done")

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self._line(trial, "error")

        return _Progress()

