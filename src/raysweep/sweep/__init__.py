"""The one sweep driver: study + space + search algorithm + scheduler -> Ray Tune, tracked in MLflow.

``run_sweep`` reads as the sweep happens: plan (``plan``: every input check, before Ray starts),
place (``placement``: Ray up, the cluster can hold a trial and reach the storage), open the sweep's
parent MLflow run, learn what an earlier attempt finished (``resume``), run the trials (``tuner``:
one Tuner, or one per stage of a staged ablation), close every trial run Ray left open, and print
the summary (``summary``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from raysweep import tracking
from raysweep.search_spaces import SpaceError, is_space_file, read_space_file, sha256, space_to_yaml
from raysweep.sweep import tuner
from raysweep.sweep.dryrun import planned_configs
from raysweep.sweep.placement import (
    auto_cpus,
    check_importable,
    check_resources,
    check_storage_shared,
    free_nodes,
    init_ray,
)
from raysweep.sweep.plan import SCHEDULERS, SEARCHES, SweepOptions, SweepPlan, plan_sweep, trial_identity
from raysweep.sweep.resume import find_checkpoints, recorded_trials
from raysweep.sweep.summary import SweepResult, best_trial, progress_callback, summary
from raysweep.text import plural
from raysweep.tracking import TrackingInfo

__all__ = ["OPTIONS_TAG", "SCHEDULERS", "SEARCHES", "SpaceError", "SweepOptions", "SweepPlan", "SweepResult",
           "find_checkpoints", "init_ray", "plan_sweep", "progress_callback", "resume_sweep", "run_sweep",
           "summary", "sweep_name_of", "dry_run_sweep"]  # fmt: skip

OPTIONS_TAG = "raysweep.options"  # the SweepOptions as JSON, so `raysweep resume` can rebuild the plan


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
    study.check(planned_configs(plan)[0], data, opts.options)  # data against the configs, before Ray and MLflow
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    storage = opts.storage_path or str(Path.cwd() / "ray_results")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    init_ray(opts.address)  # cluster checks come before the sweep's MLflow run: a refused sweep records nothing
    plan = with_auto_cpus(plan)
    at_once = check_resources(plan.resources)
    check_storage_shared(storage)
    if trainable is None:
        check_importable(study)  # a plugin missing on some node: one line now, not a failure per trial
    # before the parent run is touched: an unreadable storage path stops the resume with one line
    identity = trial_identity(plan)
    saved = find_checkpoints(storage, plan.name, study.name, data, identity) if resume_run_id else {}
    say = (lambda *a: None) if opts.quiet else (lambda *a: print(*a, flush=True))
    tracking.prepare_store(uri)  # WAL: trials of this sweep and of others may write at once
    info, attempt = _open_parent_run(plan, uri, storage, data, data_hash, resume_run_id)
    done = recorded_trials(info, study)
    say(f"sweep {plan.name}: study {study.name}, space {space.name}, {plural(plan.epochs, 'epoch')} per trial "
        f"({replace(space, epochs=plan.epochs).summary()})")  # --epochs replaces the space's everywhere
    say(f"data: {data} (SHA-256 {data_hash[:16]})")
    say(f"MLflow: {uri}  experiment {opts.experiment or study.name!r}  parent run {info.parent_run_id}")
    local = "" if uri.startswith(("http://", "https://")) else "  (start it with: raysweep ui)"
    say(f"MLflow UI: {tracking.ui_link(uri, info.experiment_id)}{local}")
    if done:
        say(f"resuming: {len(done)} configuration(s) already finished are not run again")
    if plan.resources.workers or opts.cpus_per_trial is None:
        say(f"resources: each trial {plan.resources.summary}; {at_once} such trial(s) fit this cluster at once")
    unfinished = {k: v for k, v in saved.items() if k not in done}
    ctx = plan.trial_context(data, tracking=info, resume_from={k: v["path"] for k, v in unfinished.items()},
                             identity=identity)  # fmt: skip
    run = tuner.Runner(plan, trainable or study.trainable(), ctx, storage,
                       f"{plan.name}-r{attempt}" if attempt else plan.name, done, say, at_once=at_once,
                       unfinished=[v["config"] for v in unfinished.values()])  # fmt: skip
    status = "FINISHED"
    try:
        run.run()
    except KeyboardInterrupt:
        status = "KILLED"
        say(f"interrupted; finished trials are kept. Continue with: raysweep resume {plan.name}")
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if status == "FINISHED" and any(t["status"] == "RUNNING" for t in run.trials):
            status = "KILLED"  # Ctrl-C: Tune stopped the trials and returned
            say(f"interrupted; finished trials are kept. Continue with: raysweep resume {plan.name}")
        best = best_trial(run.trials, study.mode, study.ranked)
        failed = [t for t in run.trials if t["status"] == "ERROR"]
        if status == "FINISHED" and run.trials and len(failed) == len(run.trials):
            status = "FAILED"  # a sweep in which every trial errored did not work
            reasons = dict.fromkeys(t["error"] for t in failed)
            say(f"every trial failed ({len(failed)}): " + " | ".join(reasons)
                + "; full tracebacks: each trial's error.txt under the storage path and its MLflow run")
        status = _close_sweep(plan, info, run, best, status)
    result = SweepResult(plan.name, info, run.trials, best, run.winners, status)
    print(summary(result, plan), flush=True)  # also with --quiet: the summary is what it keeps
    return result


def dry_run_sweep(opts: SweepOptions) -> dict[str, Any]:
    """``--dry-run``: the trials, resources, time, memory and disk of ``opts``, measured on this node
    without training a trial to the end or writing an MLflow run (``sweep.dryrun``)."""
    from raysweep.sweep.dryrun import dry_run

    plan = plan_sweep(opts)
    data, _ = plan.study.prepare_data(opts.data)
    plan.study.check(planned_configs(plan)[0], data, opts.options)
    init_ray(opts.address)
    plan = with_auto_cpus(plan)
    at_once = check_resources(plan.resources)
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    finished: set[str] = set()
    parent = tracking.find_sweep_run(uri, plan.name) if opts.name and _store_exists(uri) else None
    if parent is not None:  # extending or resuming a named sweep: what is already finished
        info = TrackingInfo(uri, parent.info.experiment_id, parent.info.run_id)
        finished = set(recorded_trials(info, plan.study))
    identity = trial_identity(plan)
    return dry_run(plan, at_once, finished, lambda c: tracking.trial_key(plan.study.name, data, c, identity), data)


def with_auto_cpus(plan: SweepPlan) -> SweepPlan:
    """Without --cpus-per-trial, each trial holds the CPUs no other trial of this sweep can use
    (``placement.auto_cpus``; torch trains with one thread per CPU held): a one-trial sweep on 2 CPUs
    trains on both. A trial that starts Ray Train workers keeps 1 CPU: it only waits on them."""
    opts, space = plan.opts, plan.space
    if opts.cpus_per_trial is not None or plan.resources.workers:
        return plan
    if space.stages:  # one Tuner per stage: the largest stage decides
        seeds = len(space.dim("seed").values) if any(d.name == "seed" for d in space.dims) else 1
        trials = max(len(space.dim(f).values) for f in space.stages) * seeds
    else:
        trials = len(planned_configs(plan)[0])
    cpus = auto_cpus(trials, free_nodes(), opts.gpus_per_trial, opts.max_concurrent)
    return replace(plan, resources=plan.study.resources(replace(opts, cpus_per_trial=float(cpus))))


def _store_exists(uri: str) -> bool:
    try:
        tracking.check_store(uri)  # a dry run never creates a store
    except tracking.StoreError:
        return False
    return True


def resume_sweep(name: str, tracking_uri: str | None = None, overrides: dict[str, str] | None = None,
                 trainable: Any = None, **changes: Any) -> SweepResult:  # fmt: skip
    """Continue sweep ``name`` (interrupted, killed, or with an extended space via ``overrides``).

    ``name`` is the sweep's name, or its folder under the storage path (Ray's ``Tuner.restore(path)``
    convention: ``<storage>/<name>``, also a stage's or a resume's ``<name>-stage1`` / ``<name>-r1``);
    a folder also sets the storage path.
    """
    uri = tracking.resolve_tracking_uri(tracking_uri)
    name, storage = sweep_name_of(name)
    if storage and "storage_path" not in changes:
        changes["storage_path"] = storage
    parent = tracking.find_sweep_run(uri, name)
    if parent is None:
        raise SpaceError(f"no sweep named {name!r} in {uri}; `raysweep sweep` prints the name it runs under")
    stored = json.loads(parent.data.tags[OPTIONS_TAG])
    _check_space_file(stored.get("space"), parent.data.tags.get("raysweep.space_file_sha256"), name)
    opts = SweepOptions(**{**stored, **changes})
    opts.overrides = {**opts.overrides, **(overrides or {})}
    opts.tracking_uri = uri
    return run_sweep(opts, trainable, resume_run_id=parent.info.run_id)


def _check_space_file(path: str | None, recorded: str | None, name: str) -> None:
    """A resumed sweep runs the space file it ran: SpaceError if the file is gone or was edited."""
    if not path or not recorded or not is_space_file(path):
        return
    kept = f"the sweep's parent run keeps it as artifact space_file/{Path(path).name}"
    try:
        raw = read_space_file(path)[1]
    except SpaceError:
        raise SpaceError(f"sweep {name!r} ran space file {path}, which is gone; {kept}") from None
    if sha256(raw) != recorded:
        raise SpaceError(f"space file {path} was edited since sweep {name!r} ran (its SHA-256 differs); restore it "
                         f"({kept}) or start a new sweep with it")  # fmt: skip


def sweep_name_of(name_or_path: str) -> tuple[str, str | None]:
    """(sweep name, storage path or None) from a sweep name or a sweep's folder under the storage path."""
    path = Path(name_or_path).expanduser()
    if os.sep not in name_or_path and not path.is_dir():
        return name_or_path, None
    if not path.is_dir():
        raise SpaceError(f"{name_or_path} is not a folder; pass a sweep's name or its folder under --storage-path")
    folder = path.resolve()
    return re.sub(r"(-(r\d+|stage\d+))+$", "", folder.name), str(folder.parent)


def _open_parent_run(plan: SweepPlan, uri: str, storage: str, data: str, data_hash: str,
                     resume_run_id: str | None) -> tuple[TrackingInfo, int]:  # fmt: skip
    """The sweep's parent run (a new one, or ``resume_run_id`` reopened) and the attempt number.

    It records the space that runs (after --set and --repeats) as a space file, ``space.yaml``,
    with its SHA-256, and a user's space file byte for byte with its own SHA-256: with the options
    tag, MLflow alone holds what it takes to run the sweep again (``--space space.yaml``)."""
    opts, study, space = plan.opts, plan.study, plan.space
    space_yaml = space_to_yaml(space, study.name)
    file_raw = read_space_file(opts.space)[1] if opts.space and is_space_file(opts.space) else None
    where = str(Path(opts.space).expanduser().resolve()) if file_raw else opts.space  # resume finds the file
    stored = replace(opts, name=plan.name, space=where)
    tags = {"raysweep.study": study.name, "raysweep.space": space.name, "raysweep.search": opts.search,
            "raysweep.scheduler": opts.scheduler, "raysweep.git_commit": tracking.git_commit(),
            "raysweep.data": data, "raysweep.data_sha256": data_hash, "raysweep.storage_path": storage,
            "raysweep.sweep_name": plan.name, "raysweep.space_sha256": sha256(space_yaml),
            **({"raysweep.space_file_sha256": sha256(file_raw)} if file_raw else {}),
            OPTIONS_TAG: json.dumps(asdict(stored))}  # fmt: skip
    if resume_run_id:
        info = tracking.reopen_sweep_run(uri, resume_run_id)
        attempt = int(tracking.client(uri).get_run(resume_run_id).data.tags.get("raysweep.attempt", "0")) + 1
        logger = tracking.RunLogger(uri, resume_run_id)
        logger.set_tags({**tags, "raysweep.attempt": attempt})
        logger.log_text(space_yaml, f"space-r{attempt}.yaml")  # a resume may extend the space
        return info, attempt
    params = {"study": study.name, "space": space.name, "search": opts.search,
              "scheduler": opts.scheduler, "epochs": plan.epochs, "num_samples": opts.num_samples,
              "repeats": opts.repeats, "data": data, "metric": study.metric,
              "cpus_per_trial": plan.resources.trial["cpu"], "gpus_per_trial": opts.gpus_per_trial,
              "amp": opts.amp, "varied": ",".join(space.varied()), **plan.resources.options,
              "roles": json.dumps({d.name: d.role for d in space.dims}),
              **({"space_file": Path(opts.space).name} if file_raw else {})}  # fmt: skip
    info = tracking.start_sweep_run(uri, opts.experiment or study.name, plan.name, params, tags)
    logger = tracking.RunLogger(uri, info.parent_run_id)
    logger.log_text(space_yaml, "space.yaml")
    if file_raw is not None:
        logger.log_text(file_raw.decode(errors="replace"), f"space_file/{Path(opts.space).name}")
    return info, 0


def _close_sweep(plan: SweepPlan, info: TrackingInfo, run: tuner.Runner, best: dict[str, Any] | None,
                 status: str) -> str:  # fmt: skip
    """Close the trial runs, log the best trial and stage winners on the parent run, and end it
    with ``status`` (KILLED if a second Ctrl-C comes during this clean-up); returns the status."""
    metric = plan.study.metric
    parent = tracking.RunLogger(info.uri, info.parent_run_id)
    try:
        tuner.close_runs(info, run.trials, status)
        if best:
            parent.log_metrics({f"best_{metric}": best["score"],
                                **{k: v for k, v in best["metrics"].items() if k.startswith("test_")}})  # fmt: skip
            parent.set_tags({"raysweep.best_run_id": best.get("run_id", ""),
                             "raysweep.best_config": json.dumps(best["config"], default=str)})  # fmt: skip
        if run.winners:
            parent.log_params({f"stage{w['stage']}_{w['param']}_winner": w["value"] for w in run.winners})
            parent.log_dict({"winners": run.winners}, "stage_winners.json")
    except KeyboardInterrupt:  # a second Ctrl-C during clean-up: still close the parent truthfully
        status = "KILLED"
        raise
    except tracking.TrackingUnavailable as exc:  # the server is away: its runs stay open until a resume
        parent = None
        raise tracking.TrackingUnavailable(f"{exc}: raysweep resume {plan.name}") from None
    finally:
        if parent is not None:
            parent.end(status)
    return status


class _CallableModule(types.ModuleType):
    """This package is also the Python API's ``raysweep.sweep(...)`` (``raysweep._sweep``): in
    ``raysweep``, the name ``sweep`` is this subpackage, so calling it runs a sweep."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepResult:
        from raysweep import _sweep

        return _sweep(*args, **kwargs)

    @property
    def __signature__(self) -> Any:  # inspect.signature / help show the API's parameters
        import inspect

        from raysweep import _sweep

        return inspect.signature(_sweep)


sys.modules[__name__].__class__ = _CallableModule
