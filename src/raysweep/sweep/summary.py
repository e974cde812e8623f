"""What a sweep produced, and the lines it prints: one per finished trial, a table at the end.

Generic over studies: the ranking metric is the study's, and the test metrics shown are whatever
``test_*`` metrics the study's trials report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raysweep.sweep.plan import SweepPlan, fmt_config, mean_std
from raysweep.tracking import TrackingInfo


@dataclass
class SweepResult:
    name: str
    tracking: TrackingInfo
    trials: list[dict[str, Any]]  # one per trial: config, metrics, score, status
    best: dict[str, Any] | None
    stage_winners: list[dict[str, Any]] = field(default_factory=list)
    status: str = "FINISHED"


def best_trial(trials: list[dict[str, Any]], mode: str,
               ranked: Callable[[dict[str, Any]], bool] = lambda config: True) -> dict[str, Any] | None:  # fmt: skip
    """The trial with the best finite score (``mode`` max or min) among those whose config may rank
    (``Study.ranked``: a leaky configuration never wins), or None."""
    scored = [t for t in trials if t["score"] is not None and math.isfinite(t["score"]) and ranked(t["config"])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda t: t["score"])


def headline_test_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """A trial's ``test_<name>`` metrics, sorted; breakdowns such as ``test_f1_macro`` or per-class
    values (a second underscore) are left to the report."""
    return {k: metrics[k] for k in sorted(metrics) if k.startswith("test_") and k.count("_") == 1}


def paired_test_metric(metric: str) -> str | None:
    """The test metric a validation metric predicts (``val_acc`` -> ``test_acc``), if it has one."""
    return "test_" + metric.removeprefix("val_") if metric.startswith("val_") else None


def summary(result: SweepResult, plan: SweepPlan) -> str:
    """The table printed at the end of a sweep."""
    metric = plan.study.metric
    lines = [f"\nsweep {result.name}: {len(result.trials)} trials, status {result.status}"]
    for w in result.stage_winners:
        spread = mean_std(w["score"], w.get("std", 0.0), w.get("n", 1))
        lines.append(f"  stage {w['stage']} ({w['param']}): winner {w['value']}  {metric} {spread}")
    b = result.best
    if b:
        varied = {k: b["config"][k] for k in plan.space.varied() if k in b["config"]}
        lines.append(f"  best config : {fmt_config(varied) or fmt_config(b['config'])}")
        lines.append(f"  best {metric:<7}: {b['score']:.4f}")
        for k, v in headline_test_metrics(b["metrics"]).items():
            lines.append(f"  {k:<12}: {v:.4f}")
        lines.append(f"  best run    : {b.get('run_id', '?')}")
        lines.append(f"  why         : best {metric} ({plan.study.mode}) of {_n_ranked(result, plan)} ranked trial(s)")
    else:
        lines.append("  no trial produced a finite metric")
    leaky = [t for t in result.trials if not plan.study.ranked(t["config"])]
    if leaky:
        lines.append(f"  not ranked  : {len(leaky)} trial(s) — {plan.study.ranking_note()}")
        for t in leaky:
            leak = {k: v for k, v in t["metrics"].items() if k.startswith("leak_")}
            score = f"{metric} {t['score']:.4f}" if t["score"] is not None else "no metric"
            cfg = fmt_config({k: t["config"][k] for k in plan.space.varied() if k in t["config"]})
            lines.append(f"    {cfg}: {score}" + "".join(f", {k} {v:.3f}" for k, v in leak.items()))
    exp = plan.opts.experiment or plan.study.name
    lines.append(f"  experiment  : {exp}   parent run {result.tracking.parent_run_id}")
    lines.append(f"  tracking    : {result.tracking.uri}   (browse: raysweep ui)")
    return "\n".join(lines)


def _n_ranked(result: SweepResult, plan: SweepPlan) -> int:
    return sum(1 for t in result.trials if t["score"] is not None and plan.study.ranked(t["config"]))


def progress_callback(metric: str, say: Callable[..., None], varied: list[str] | None = None) -> Any:
    """A Tune callback that prints one short line per finished trial (Tune's own table is off) and
    remembers which trials completed or errored: a trial in neither set was interrupted."""
    from ray.tune import Callback

    test_metric = paired_test_metric(metric)

    class Progress(Callback):
        def __init__(self) -> None:
            self.completed: set[str] = set()
            self.errored: set[str] = set()

        def _line(self, trial: Any, what: str) -> None:
            r = trial.last_result or {}
            cfg = " ".join(f"{k}={v}" for k, v in trial.config.items() if not varied or k in varied)
            score = r.get(f"best_{metric}", r.get(metric))
            extra = f"{metric} {score:.4f}" if isinstance(score, (int, float)) else "no metric"
            if test_metric and isinstance(r.get(test_metric), (int, float)):
                extra += f"  {test_metric} {r[test_metric]:.4f}"
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
