"""``raysweep audit NAME``: did early stopping throw away the configuration that would have won?

The K configurations a scheduler stopped with the best metric at their rung are trained to the
end, as a sweep of their own (``audit-NAME``, experiment ``<experiment>-audit`` so that the
report's rankings never mix a rerun with the run it reruns). The audit sweep uses the audited
sweep's stored options (``raysweep.options``): its data, epochs, patience, resources and seeds.
It runs these configurations with grid search and no scheduler. Its parent run names the audited
sweep (tag ``raysweep.audit_of``, param ``audit_of``). Each finished configuration is then compared
with the audited sweep's winner by ``raysweep.stats.compare`` (paired over the seeds they share).
Running the audit again continues it, like ``raysweep resume``, and reruns nothing finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from raysweep import stats, tracking
from raysweep.search_spaces import Hyper, Space, SpaceError, with_overrides
from raysweep.sweep.plan import config_id
from raysweep.tracking import OUTCOME_TAG, TrackingInfo

AUDIT_TAG = "raysweep.audit_of"  # on the audit sweep's parent run: the audited sweep's name
AUDITED_BY_TAG = "raysweep.audited_by"  # on the audited sweep's parent run: the audit sweep's name
STOPPED = "stopped_by_scheduler"


def audit_name(name: str) -> str:
    """The audit sweep's name (a prefix, not a suffix: ``find_checkpoints`` reads ``NAME-*`` folders
    as the audited sweep's own, and the audit's trials have the same keys)."""
    return f"audit-{name}"


def listed_space(space: Space, hypers: dict[str, Hyper], configs: list[dict[str, Any]]) -> Space:
    """``space`` narrowed to exactly ``configs`` (each run with every seed the sweep gives it): every
    hyperparameter takes the listed values, kept to the listed combinations; no stages."""
    names = [d.name for d in space.dims if d.name != "seed"]
    overrides = {n: ",".join(dict.fromkeys(str(c[n]) for c in configs if n in c)) for n in names
                 if any(n in c for c in configs)}  # fmt: skip
    narrowed = with_overrides(replace(space, stages=(), baseline={}, combinations=()), hypers, overrides)
    combos = tuple({k: v for k, v in c.items() if k in overrides} for c in configs)
    return replace(narrowed, combinations=tuple(dict(t) for t in dict.fromkeys(tuple(c.items()) for c in combos)))


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "seed"}


@dataclass
class Candidate:
    """A configuration a scheduler stopped: its best metric at a rung, and how it finishes."""

    config: dict[str, Any]  # without seed
    at_rung: float  # the best of its stopped runs' metric at their rung
    rung: int | None
    finished: dict[Any, float] = field(default_factory=dict)  # seed -> score, trained to the end
    comparison: stats.Comparison | None = None


def stopped_candidates(runs: list, study: Any, top: int) -> list[Candidate]:
    """The ``top`` configurations (seeds together) a scheduler stopped, best at their rung first."""
    from raysweep.sweep.resume import record_from_run

    best: dict[str, Candidate] = {}
    sign = 1 if study.mode == "max" else -1
    for run in runs:
        if run.data.tags.get(OUTCOME_TAG) != STOPPED:
            continue
        tags, config = run.data.tags, record_from_run(run, study)["config"]
        value = tags.get("raysweep.stop.value", run.data.metrics.get(f"best_{study.metric}"))
        if value is None:
            continue
        rung = int(tags["raysweep.stop.rung"]) if "raysweep.stop.rung" in tags else None
        cand = Candidate(_without_seed(config), float(value), rung)
        old = best.get(config_id(config))
        if old is None or sign * cand.at_rung > sign * old.at_rung:
            best[config_id(config)] = cand
    ranked = sorted(best.values(), key=lambda c: c.at_rung, reverse=study.mode == "max")
    return ranked[:top]


@dataclass
class AuditResult:
    audited: str
    name: str  # the audit sweep's name
    winner: dict[str, Any]  # the audited sweep's best configuration (without seed)
    winner_scores: dict[Any, float]  # seed -> score
    candidates: list[Candidate]
    verdict: str
    status: str = "FINISHED"
    lines: list[str] = field(default_factory=list)


def audit_sweep(name: str, tracking_uri: str | None = None, top: int = 3, trainable: Any = None, dry_run: bool = False,
                say: Callable[[str], None] = print, **changes: Any) -> AuditResult | None:  # fmt: skip
    """Train the ``top`` best stopped configurations of sweep ``name`` to the end and compare them with
    its winner (module docstring). ``changes``: SweepOptions fields to replace (address, quiet, ...).
    Returns None when nothing was stopped, or after ``dry_run`` (it prints the audit's plan)."""
    from raysweep.studies import get_study
    from raysweep.sweep import OPTIONS_TAG, SweepOptions, dry_run_sweep, plan_sweep, run_sweep

    if top < 1:
        raise SpaceError(f"--top must be >= 1, got {top}")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    try:
        tracking.check_store(uri)
    except tracking.StoreError as exc:
        raise SpaceError(str(exc)) from None
    parent = tracking.find_sweep_run(uri, name)
    if parent is None:
        raise SpaceError(f"no sweep named {name!r} in {uri}; `raysweep sweep` prints the name it runs under")
    if AUDIT_TAG in parent.data.tags:
        raise SpaceError(f"{name!r} is itself an audit (of {parent.data.tags[AUDIT_TAG]!r}); audit that sweep")
    stored = SweepOptions(**json.loads(parent.data.tags[OPTIONS_TAG]))
    study = get_study(stored.study)
    info = TrackingInfo(uri, parent.info.experiment_id, parent.info.run_id)
    runs = tracking.child_runs(uri, info)
    candidates = stopped_candidates(runs, study, top)
    if not candidates:
        say(f"sweep {name}: no trial was stopped early by a scheduler; nothing to audit")
        return None
    best_config = json.loads(parent.data.tags.get("raysweep.best_config", "null") or "null")
    if best_config is None:
        raise SpaceError(f"sweep {name!r} has no winner (no trial finished with a {study.metric}); nothing to compare")
    winner = _without_seed(best_config)
    winner_scores = _scores(runs, study, winner)

    audit = audit_name(name)
    opts = replace(stored, name=audit, search="grid", scheduler="fifo", num_samples=1, overrides={},
                   configs=[c.config for c in candidates], tracking_uri=uri,
                   experiment=f"{stored.experiment or study.name}-audit",
                   storage_path=stored.storage_path or parent.data.tags.get("raysweep.storage_path"),
                   **changes)  # fmt: skip
    plan = plan_sweep(opts)
    seeds = [d.values for d in plan.space.dims if d.name == "seed"]
    say(f"audit of sweep {name}: the {len(candidates)} best configuration(s) a scheduler stopped, trained to "
        f"{plan.epochs} epochs" + (f" with seeds {list(seeds[0])}" if seeds else "") + f" as sweep {audit}")
    if dry_run:
        dry_run_sweep(opts)
        return None
    existing = tracking.find_sweep_run(uri, audit)
    result = run_sweep(opts, trainable, resume_run_id=existing.info.run_id if existing else None)
    tracking.RunLogger(uri, result.tracking.parent_run_id).set_tags({AUDIT_TAG: name})
    tracking.RunLogger(uri, result.tracking.parent_run_id).log_params({"audit_of": name})
    tracking.RunLogger(uri, parent.info.run_id).set_tags({AUDITED_BY_TAG: audit})
    for c in candidates:
        c.finished = {t["config"].get("seed"): t["score"] for t in result.trials
                      if config_id(t["config"]) == config_id(c.config) and t["score"] is not None}  # fmt: skip
        c.comparison = stats.compare(c.finished, winner_scores, study.mode) if c.finished else None
    lines, verdict = report_lines(winner, winner_scores, candidates, study.metric)
    for line in lines:
        say(line)
    return AuditResult(name, audit, winner, winner_scores, candidates, verdict, result.status, lines)


def _scores(runs: list, study: Any, config: dict[str, Any]) -> dict[Any, float]:
    """seed -> score of the finished runs of ``config`` (seeds together) among ``runs``."""
    from raysweep.sweep.resume import record_from_run

    out = {}
    for run in runs:
        rec = record_from_run(run, study)
        done = run.info.status == "FINISHED" and run.data.tags.get(OUTCOME_TAG) != STOPPED
        if done and config_id(rec["config"]) == config_id(config) and rec["score"] is not None:
            out[rec["config"].get("seed")] = rec["score"]
    return out


def _fmt(config: dict[str, Any], shown: dict[str, Any]) -> str:
    """The hyperparameters in which ``config`` differs from ``shown`` (all when none differ)."""
    diff = {k: v for k, v in config.items() if shown.get(k) != v}
    return " ".join(f"{k}={v}" for k, v in (diff or config).items())


def report_lines(winner: dict[str, Any], winner_scores: dict[Any, float], candidates: list[Candidate],
                 metric: str) -> tuple[list[str], str]:  # fmt: skip
    """The audit's lines (the winner, each candidate at its rung and at the end, against the winner)
    and its verdict: which stopped configurations finish measurably better than the winner, if any."""
    lines = [f"  winner     {_fmt(winner, candidates[0].config if candidates else {})}: {metric} "
             f"{stats.fmt_spread(stats.spread(winner_scores.values()))}"]  # fmt: skip
    better = []
    for c in candidates:
        where = f"epoch {c.rung}" if c.rung is not None else "its rung"
        head = f"  stopped    {_fmt(c.config, winner)} ({metric} {c.at_rung:.4f} at {where})"
        if c.comparison is None:
            lines.append(f"{head}: did not finish in the audit")
            continue
        lines.append(f"{head} -> finishes {stats.fmt_spread(stats.spread(c.finished.values()))}; "
                     f"against the winner {stats.fmt_comparison(c.comparison)}")  # fmt: skip
        if c.comparison.verdict == "better":
            better.append(c)
    if better:
        verdict = "; ".join(
            f"stopped {_fmt(c.config, winner)}, which finishes {c.comparison.diff:+.4f} {metric} "
            f"[95% CI {c.comparison.low:+.4f}, {c.comparison.high:+.4f}] better than the winner"
            for c in better)  # fmt: skip
    else:
        verdict = "early stopping cost nothing measurable"
        unsure = [c for c in candidates if c.comparison is not None and c.comparison.verdict != "worse"]
        if unsure:
            verdict += (f" ({len(unsure)} of {len(candidates)} not resolved against the winner with these seeds: "
                        "more seeds (--repeats) would tell)")  # fmt: skip
    lines.append(f"verdict: {verdict}")
    return lines, verdict
