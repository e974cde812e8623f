"""Tune wiring: a plan's trials through Ray Tune, and every trial run closed truthfully afterwards.

A search algorithm and a scheduler are each one entry of a table (``SEARCH_ALGS``, ``SCHEDULERS``)
whose keys are the choices ``plan.SEARCHES`` / ``plan.SCHEDULERS`` accept. Ray is imported lazily:
planning a sweep must not pay for it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from raysweep import tracking
from raysweep.context import TrialContext
from raysweep.search_spaces import configs_of, to_tune
from raysweep.sweep.plan import Draws, SweepPlan, draws, staged_ablation
from raysweep.sweep.resume import record_from_run
from raysweep.sweep.summary import progress_callback
from raysweep.tracking import OUTCOME_TAG, TrackingInfo

Points = list[dict[str, Any]]


def _grid(plan: SweepPlan, points: Points, limit: int) -> tuple[dict[str, Any], Any]:
    """An explicit list of points: exactly those configurations, each once."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    param_space = {d.name: tune.choice(list(d.values)) for d in plan.space.dims}
    return param_space, BasicVariantGenerator(points_to_evaluate=points, max_concurrent=limit)


SamplingBuilder = Callable[[SweepPlan, Draws], tuple[dict[str, Any], Any]]
"""(plan, what to draw) -> (Tune param_space, search algorithm)."""


def _sampling(sampler: Callable[[int], Any]) -> SamplingBuilder:
    """A sampling search: Optuna's ``sampler(seed)`` through Ray's ``OptunaSearch``, inside the
    ``SeededSearcher`` (each configuration once, with every seed; the mean goes to the sampler). A
    resume hands it what an earlier attempt finished, so TPE continues from what it learnt. The
    searcher owns the sampled dimensions; the Tuner's param_space keeps the fixed values."""

    def build(plan: SweepPlan, d: Draws) -> tuple[dict[str, Any], Any]:
        from ray.tune.search.optuna import OptunaSearch
        from ray.tune.search.sample import Domain

        from raysweep.sweep.searcher import SeededSearcher

        full = to_tune(plan.space, exclude=("seed",))
        sampled = {k: v for k, v in full.items() if isinstance(v, Domain)}
        constants = {k: v for k, v in full.items() if k not in sampled}
        finite = {x.name: x.finite() for x in plan.space.dims if x.name in sampled}
        choices = None if any(v is None for v in finite.values()) else finite
        inner = (OptunaSearch(space=sampled, sampler=sampler(plan.opts.seed), metric=plan.study.metric,
                              mode=plan.study.mode) if sampled else None)  # fmt: skip
        return constants, SeededSearcher(inner, d, constants, choices, plan.study.metric, plan.study.mode)

    return build


def _tpe(seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _qmc(seed: int) -> Any:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, scramble=True)


def _random_sampler(seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


SEARCH_ALGS: dict[str, Callable[..., tuple[dict[str, Any], Any]]] = {
    "grid": _grid,
    "random": _sampling(_random_sampler),
    "optuna": _sampling(_tpe),
    "qmc": _sampling(_qmc),
}


def _asha(plan: SweepPlan, ctx: TrialContext) -> Any:
    """ASHA on the loop's own epoch, its rungs seeded from the trials this sweep (this stage)
    recorded before: after ``raysweep resume`` it compares every trial on the same clock against the
    same rungs (``sweep.asha``)."""
    from raysweep.sweep.asha import RecordedASHA, recorded_history, tag_stop

    history = recorded_history(ctx.tracking, plan.study.metric, ctx.run_tags.get("raysweep.stage"), plan.epochs)
    return RecordedASHA(lambda config: tracking.trial_key(ctx.study, ctx.data, config, ctx.identity), history,
                        lambda key, decision: tag_stop(ctx.tracking, key, decision),
                        max_t=plan.epochs, grace_period=min(2, plan.epochs), reduction_factor=3)  # fmt: skip


SCHEDULERS: dict[str, Callable[[SweepPlan, TrialContext], Any]] = {"fifo": lambda plan, ctx: None, "asha": _asha}
"""(plan, the trials' context) -> a Tune scheduler. One that stops trials early keeps a
``decisions`` dict (trial key -> ``asha.Decision``): ``close_runs`` puts each on its trial's run."""


@dataclass
class Runner:
    """Runs a plan's trials through Ray Tune, skipping configurations already recorded."""

    plan: SweepPlan
    fn: Any  # the trainable: fn(config, ctx)
    ctx: TrialContext
    storage: str
    name: str  # the Tune run's name (a resume gets its own: a reused name reloads old checkpoints)
    done: dict[str, dict[str, Any]]  # trial key -> record, finished before this run
    say: Callable[..., None]
    at_once: int = 0  # trials whose workers all fit the cluster at once (0: Tune decides)
    unfinished: Points = field(default_factory=list)  # configs with a checkpoint but no finished run
    trials: list[dict[str, Any]] = field(init=False)
    winners: list[dict[str, Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.trials = list(self.done.values())

    def key(self, config: dict[str, Any]) -> str:
        return tracking.trial_key(self.ctx.study, self.ctx.data, config, self.ctx.identity)

    def run(self) -> None:
        """The whole plan: a staged ablation stage by stage, any other space in one Tuner."""
        if self.plan.space.stages:
            self.staged()
        else:
            self.flat()

    def flat(self) -> None:
        space, opts = self.plan.space, self.plan.opts
        if opts.search == "grid":
            points = configs_of(space)  # each once: repeats are seeds (plan_sweep refuses --num-samples)
            todo = [c for c in points if self.key(c) not in self.done]
            if todo:
                self.tune(self.ctx, todo, len(todo), self.name)
            return
        # random / optuna / qmc: num_samples configurations, each with every seed; a resume completes
        # the configurations it has (only their missing seeds) and draws the rest
        d = draws(self.plan, list(self.done.values()), self.unfinished)
        if d.note:
            self.say(d.note)
        if d.trials:
            self.tune(self.ctx, [], d.trials, self.name, d)

    def staged(self) -> None:
        """``plan.staged_ablation``, each stage one Tuner whose trial runs are tagged with the stage."""

        def run_stage(i: int, label: str, todo: Points) -> list[dict[str, Any]]:
            stage_ctx = replace(self.ctx, run_tags={"raysweep.stage": i, "raysweep.stage_param": label})
            return self.tune(stage_ctx, todo, len(todo), f"{self.name}-stage{i}")

        study = self.plan.study
        for winner in staged_ablation(self.plan.space, study.metric, study.mode, self.trials, run_stage, self.say,
                                      study.ranked):
            self.winners.append(winner)

    def tune(self, ctx: TrialContext, points: Points, num_samples: int, name: str,
             drawn: Draws | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """One Tuner over grid ``points``, or over ``num_samples`` trials of the configurations a
        sampling search draws (``drawn``); returns, and keeps, their records."""
        from ray import tune

        plan, opts, study = self.plan, self.plan.opts, self.plan.study
        # Tune places a trial by its own request only; a trial that starts workers must not start
        # unless they fit too, or every running trial would wait forever for its workers.
        limits = [n for n in (opts.max_concurrent, self.at_once if plan.resources.workers else 0) if n]
        limit = min(limits) if limits else 0
        build = SEARCH_ALGS[opts.search]
        if drawn is None:
            param_space, search_alg = build(plan, points, limit)
        else:
            param_space, search_alg = build(plan, drawn)
        progress = progress_callback(study.metric, self.say, plan.space.varied(), epochs=plan.epochs,
                                     total=len(points) if drawn is None else num_samples,
                                     at_once=limit or self.at_once, live=not opts.quiet)  # fmt: skip
        trainable = tune.with_resources(tune.with_parameters(self.fn, ctx=ctx), plan.resources.trial)
        # Tune's CSV and JSON logs only (its results read them): its default TensorBoard logger would
        # import torch into the driver and write event files per result; MLflow is the tracking here.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

        scheduler = SCHEDULERS[opts.scheduler](plan, ctx)
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
                failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                callbacks=[progress, CSVLoggerCallback(), JsonLoggerCallback(), checkpoint_pruner()]
                + ([worker_group_releaser()] if plan.resources.workers else []),
            ),
        )  # fmt: skip
        quiet_failures = _OneLinePerFailure()
        controller_log = logging.getLogger("ray.tune.execution.tune_controller")
        controller_log.addFilter(quiet_failures)  # our progress line says it once; the traceback stays
        try:  # in the trial's error.txt and its MLflow run
            grid = tuner.fit()
        finally:
            controller_log.removeFilter(quiet_failures)
        records = [trial_record(r, ctx, study.metric, study.mode, progress.completed) for r in grid]
        stops = getattr(scheduler, "decisions", {})
        for r in records:
            r.update(ctx.run_tags)
            if r["key"] in stops:
                r["stopped_at"] = stops[r["key"]]
        self.trials.extend(records)
        if any(r["status"] == "RUNNING" for r in records):  # Ctrl-C: Tune stopped its trials and returned;
            self.settle(records)  # no later stage may start, nor a winner come from trials cut short
            raise KeyboardInterrupt
        return records


    def settle(self, records: list[dict[str, Any]]) -> None:
        """After Ctrl-C, each stopped trial's record as its MLflow run has it: a trial that closed its run
        FINISHED as Tune stopped it (its last report in flight) did finish, and one cut short had logged
        (and checkpointed) the epoch whose report Tune never took."""
        info = self.ctx.tracking
        if info is None:
            return
        runs = {r.data.tags.get(tracking.KEY_TAG): r for r in tracking.child_runs(info.uri, info)}
        for r in records:
            run = runs.get(r["key"]) if r["status"] == "RUNNING" else None
            if run is None or run.data.metrics.get("epoch", 0) < r["metrics"].get("epoch", 0):
                continue
            logged = record_from_run(run, self.plan.study)
            r.update({k: logged[k] for k in ("score", "metrics", "run_id")})
            if run.info.status == "FINISHED":
                r["status"] = "TERMINATED"


def error_line(error: BaseException) -> str:
    """A trial's failure in one line: the exception's own last line (``ValueError: ...``), not the
    header of Ray's wrapper (``ray::ImplicitFunc.train() (pid=...)``)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(error).splitlines()]
    lines = [ln for ln in lines if ln]
    return (lines[-1] if lines else type(error).__name__)[:300]


class _OneLinePerFailure(logging.Filter):
    """Drops Tune's "Trial task failed" traceback from the console (a trial's failure is printed as
    one line by the progress callback, and the sweep's end names the reasons once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trial task failed")


def trial_record(result: Any, ctx: TrialContext, metric: str, mode: str, completed: set[str]) -> dict[str, Any]:
    """A trial's config, last metrics, score (its best ``metric``), MLflow key and status:
    TERMINATED (completed, also when a scheduler stopped it), ERROR, or RUNNING (interrupted)."""
    metrics = dict(result.metrics or {})
    config = dict(result.config or {})
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
        "key": tracking.trial_key(ctx.study, ctx.data, config, ctx.identity),
        "status": "ERROR" if result.error is not None else ("TERMINATED" if done else "RUNNING"),
        "error": error_line(result.error) if result.error is not None else "",
    }


def close_runs(info: TrackingInfo, trials: list[dict[str, Any]], sweep_status: str) -> None:
    """No trial run stays RUNNING: stopped by the scheduler -> FINISHED, errored -> FAILED,
    interrupted -> KILLED. Also attaches run ids to the trial records.

    A scheduler (ASHA) stops a trial in its report and ends its actor; the trial leaves its run RUNNING
    (``TuneSession.stopped``). A process killed another way may have closed its run as ``killed``
    first. Tune counts either trial complete, so here it becomes what it was: ``stopped_by_scheduler``,
    with the scheduler's reason as ``raysweep.stop.*`` tags (``asha.Decision``: rung, value, cut-off,
    how many trials the cut-off came from)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        by_key.setdefault(t["key"], []).append(t)
    for run in tracking.child_runs(info.uri, info):
        same = by_key.get(run.data.tags.get(tracking.KEY_TAG, ""), [])
        for x in same:  # every record of the key names its run: the summary always names the best run
            x["run_id"] = run.info.run_id
        t = same[-1] if same else None
        if t is not None and t.get("stopped_at") is not None:  # the scheduler's reason, on the record
            tracking.RunLogger(info.uri, run.info.run_id).set_tags(t["stopped_at"].tags())
        killed = run.info.status == "KILLED" and run.data.tags.get(OUTCOME_TAG) == "killed"
        # stopped on the record (``asha.tag_stop``), also by an earlier attempt that was killed: a result
        stopped = "raysweep.stop.rung" in run.data.tags and run.info.status in ("RUNNING", "KILLED")
        if run.info.status != "RUNNING" and not (killed and t is not None and t["status"] == "TERMINATED") \
                and not stopped:  # fmt: skip
            continue
        logger = tracking.RunLogger(info.uri, run.info.run_id)
        if stopped or (t is not None and t["status"] == "TERMINATED" and sweep_status != "KILLED"):
            logger.set_tags({OUTCOME_TAG: "stopped_by_scheduler"})
            logger.end("FINISHED")
        elif t is not None and t["status"] == "ERROR":
            logger.set_tags({OUTCOME_TAG: "error", tracking.REASON_TAG: t["error"]})
            logger.end("FAILED")
        else:
            logger.set_tags({OUTCOME_TAG: "interrupted"})
            logger.end("KILLED")


def checkpoint_pruner() -> Any:
    """A Tune callback that keeps each trial's latest checkpoint only (what a resume reads,
    ``resume.find_checkpoints``).

    Not ``CheckpointConfig(num_to_keep=1)``: with it, Tune saves the whole experiment state (every
    trial's) and waits for its upload after every checkpoint, driver work that grows with the trials;
    in a sweep of 1-second trials that was a third of raysweep's cost over a bare loop
    (BENCHMARKS.md, short trials). Nothing here reads that state; Tune still saves it every 10 s.
    """
    from ray.tune import Callback

    class Prune(Callback):
        def __init__(self) -> None:
            self.latest: dict[str, Any] = {}  # trial id -> its newest checkpoint (ray.tune.Checkpoint)

        def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
            old, self.latest[trial.trial_id] = self.latest.get(trial.trial_id), checkpoint
            if old is None or old.path == checkpoint.path:
                return
            try:
                old.filesystem.delete_dir(old.path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # a full or read-only store must not stop the sweep: the space is all it costs
                logging.getLogger(__name__).warning("could not delete the superseded checkpoint %s: %s", old.path, exc)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.latest.pop(trial.trial_id, None)

        on_trial_error = on_trial_complete  # a failed trial's last checkpoint stays for a resume

    return Prune()


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
