"""What a sweep produced, and the lines it prints: one per finished trial, a table at the end.

Generic over studies: the ranking metric is the study's, and the test metrics shown are whatever
``test_*`` metrics the study's trials report.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raysweep.configuration import Group, config_id, fmt_score, group_by_config, rank, versus
from raysweep.stats import Comparison, fmt_comparison, fmt_spread
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
    """The best-scoring seed of the best configuration (best mean score over its seeds) among the
    finished trials that may rank (``Study.ranked``: a leaky configuration never wins), or None. An
    interrupted or errored trial never wins: its score is that of a shorter training."""
    groups = ranked_groups(trials, mode, ranked)
    if not groups:
        return None
    scored = [t for t in groups[0].members if t["score"] is not None and math.isfinite(t["score"])]
    return (max if mode == "max" else min)(scored, key=lambda t: t["score"])


def ranked_groups(trials: list[dict[str, Any]], mode: str,
                  ranked: Callable[[dict[str, Any]], bool] = lambda config: True) -> list[Group]:  # fmt: skip
    """The finished trials' configurations (seeds together) that may rank, best mean score first."""
    groups = group_by_config((t["config"], t["score"], t) for t in trials if finished(t))
    return rank([g for g in groups if ranked(g.members[0]["config"])], mode)


def finished(trial: dict[str, Any]) -> bool:
    """Trained to its end (also stopped early, by its patience or the scheduler): not interrupted, not errored."""
    return trial.get("status", "TERMINATED") == "TERMINATED"


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
        spread = mean_std(w["score"], w.get("std", math.nan), w.get("n", 1))
        lines.append(f"  stage {w['stage']} ({w['param']}): winner {w['value']}  {metric} {spread}")
        if "verdict" in w:
            lines.append(f"    {stage_line(w)}")
    groups = ranked_groups(result.trials, plan.study.mode, plan.study.ranked)
    b = result.best
    if b and groups:
        best = groups[0]
        shown = plan.space.varied()
        lines.append(f"  best config : {_cfg(best.config, shown)}")
        lines.append(f"  best {metric:<7}: {fmt_spread(best.spread)}  (mean over seeds)")
        if len(groups) > 1:
            cmp = versus(best, groups[1], plan.study.mode)
            lines.append(f"  vs runner-up: {_cfg(groups[1].config, shown)} {fmt_spread(groups[1].spread)}: "
                         f"{fmt_comparison(cmp)}" + ("" if cmp.verdict == "better" else "; not a resolved win"))
        base = _baseline_group(result, plan)
        if base is not None and config_id(base.config) != config_id(best.config):
            cmp = versus(best, base, plan.study.mode)
            lines.append(f"  vs baseline : {_cfg(base.config, shown)} {fmt_spread(base.spread)}: {fmt_comparison(cmp)}")
        for k in headline_test_metrics(b["metrics"]):
            values = [t["metrics"][k] for t in best.members if isinstance(t["metrics"].get(k), (int, float))]
            lines.append(f"  {k:<12}: {fmt_score(values)}")
        lines.append(f"  best run    : {b.get('run_id', '?')}  (its best seed)")
        lines.append(f"  why         : best mean {metric} ({plan.study.mode}) of {len(groups)} ranked "
                     f"configuration(s), {_n_ranked(result, plan)} trial(s)")  # fmt: skip
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
    lines += unfinished_lines(result, plan)
    exp = plan.opts.experiment or plan.study.name
    lines.append(f"  experiment  : {exp}   parent run {result.tracking.parent_run_id}")
    lines.append(f"  tracking    : {result.tracking.uri}   (browse: raysweep ui)")
    return "\n".join(lines)


def stage_line(w: dict[str, Any]) -> str:
    """A stage winner's comparison as ``staged_ablation`` records it (``StageDecision.record``)."""
    if w.get("diff") is None:
        return f"no other {w['param']} value scored: cannot tell; not resolved"
    cmp = Comparison(w["diff"], w["low"], w["high"], w["paired"], w["pairs"], w["verdict"], w.get("seeds_needed"))
    state = "resolved" if w.get("resolved") else "not resolved (advances by the mean)"
    return f"vs {w['param']}={w['vs']} ({w['vs_role']}): {fmt_comparison(cmp)}; {state}"


def _cfg(config: dict[str, Any], shown: list[str]) -> str:
    return fmt_config({k: v for k, v in config.items() if k in shown}) or fmt_config(config)


def _baseline_group(result: SweepResult, plan: SweepPlan) -> Group | None:
    """A staged ablation's stage-0 configuration (the report's baseline), if it scored."""
    if not plan.space.stages:
        return None
    base = [t for t in result.trials if t.get("raysweep.stage") == 0]
    groups = rank(group_by_config((t["config"], t["score"], t) for t in base), plan.study.mode)
    return groups[0] if groups else None


def _n_ranked(result: SweepResult, plan: SweepPlan) -> int:
    return sum(1 for t in result.trials if finished(t) and t["score"] is not None and plan.study.ranked(t["config"]))


def unfinished_lines(result: SweepResult, plan: SweepPlan) -> list[str]:
    """After an interrupt: the finished trials (the only ones ranked), then each interrupted trial and
    the epoch it reached, so nobody reads a trial cut short as a result."""
    stopped = [t for t in result.trials if t.get("status") == "RUNNING"]
    if not stopped:
        return []
    metric, varied = plan.study.metric, plan.space.varied()

    def cfg(t: dict[str, Any]) -> str:
        return fmt_config({k: t["config"][k] for k in varied if k in t["config"]}) or fmt_config(t["config"])

    done = [t for t in result.trials if finished(t)]
    lines = [f"  finished    : {len(done)} of {len(result.trials)} trial(s), the only ones ranked"]
    for t in done:
        score = f"{metric} {t['score']:.4f}" if t["score"] is not None else "no metric"
        lines.append(f"    {cfg(t)}: {score}")
    lines.append(f"  interrupted : {len(stopped)} trial(s), not ranked; continue with: raysweep resume {result.name}")
    for t in stopped:
        epoch = t["metrics"].get("epoch")
        if epoch is None:
            lines.append(f"    {cfg(t)}: not started")
            continue
        so_far = f", {metric} {t['score']:.4f} so far" if t["score"] is not None else ""
        lines.append(f"    {cfg(t)}: interrupted after epoch {int(epoch)} of {plan.epochs}{so_far}")
    return lines


def progress_callback(metric: str, say: Callable[..., None], varied: list[str] | None = None, *,
                      epochs: int = 0, total: int = 0, at_once: int = 0, live: bool = True) -> Any:  # fmt: skip
    """A Tune callback that prints progress (Tune's own table is off) and remembers which trials
    completed or errored: a trial in neither set was interrupted.

    ``live``: a line per epoch of each running trial (trial, epoch/epochs, ``metric``, seconds per
    epoch, the trial's ETA) followed by a sweep line (trials done/total, running, failed, the
    sweep's ETA from the measured epoch times and ``at_once`` concurrent trials); one line per
    event, so logs of ``ray job submit`` stay readable. Always: a line per finished trial.
    """
    from ray.tune import Callback

    test_metric = paired_test_metric(metric)

    class Progress(Callback):
        def __init__(self) -> None:
            self.completed: set[str] = set()
            self.errored: set[str] = set()
            self.epoch_s: dict[str, float] = {}  # trial id -> its latest seconds per epoch
            self.epoch: dict[str, int] = {}  # trial id -> epochs done

        def _cfg(self, trial: Any) -> str:
            return " ".join(f"{k}={v}" for k, v in trial.config.items() if not varied or k in varied)

        def _line(self, trial: Any, what: str) -> None:
            r = trial.last_result or {}
            score = r.get(f"best_{metric}", r.get(metric))
            extra = f"{metric} {score:.4f}" if isinstance(score, (int, float)) else "no metric"
            if test_metric and isinstance(r.get(test_metric), (int, float)):
                extra += f"  {test_metric} {r[test_metric]:.4f}"
            if r.get("diverged"):
                extra = "diverged (non-finite loss)"
            say(f"[{len(self.completed) + len(self.errored)}] {trial.trial_id} {self._cfg(trial)} -> {extra} [{what}]")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if not live or "epoch" not in result:
                return
            tid = trial.trial_id
            self.epoch[tid] = int(result["epoch"])
            if isinstance(result.get("epoch_time_s"), (int, float)):
                self.epoch_s[tid] = float(result["epoch_time_s"])
            sec = self.epoch_s.get(tid)
            value = result.get(metric)
            shown = f"{metric} {value:.4f}" if isinstance(value, (int, float)) else f"no {metric}"
            left = max(0, epochs - self.epoch[tid]) if epochs else 0
            pace = f"{sec:.1f} s/epoch, ETA {_duration(left * sec)}" if sec is not None else "timing..."
            say(f"  {tid} epoch {self.epoch[tid]}/{epochs or '?'}  {shown}  {pace}  ({self._cfg(trial)})")
            say(self.sweep_line(trials))

        def sweep_line(self, trials: list) -> str:
            done, failed = len(self.completed), len(self.errored)
            running = sum(1 for t in trials if t.status == "RUNNING")
            n = max(total, len(trials))
            line = f"  sweep: {done}/{n} trials done, {running} running, {failed} failed"
            if self.epoch_s and epochs:
                per_epoch = sum(self.epoch_s.values()) / len(self.epoch_s)
                ended = self.completed | self.errored
                unfinished = sorted((t for t in trials if t.trial_id not in ended),
                                    key=lambda t: t.status != "RUNNING")  # running ones hold the slots first
                left = [max(0, epochs - self.epoch.get(t.trial_id, 0)) for t in unfinished]
                left += [epochs] * max(0, n - len(trials))  # trials not created yet
                eta = sweep_eta(left, at_once or running or 1) * per_epoch
                line += f", ETA {_duration(eta)} (from measured epoch times)"
            return line

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.completed.add(trial.trial_id)
            self._line(trial, "done")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.errored.add(trial.trial_id)
            self._line(trial, "error")

    return Progress()


def sweep_eta(left: list[int], at_once: int) -> int:
    """Epoch-times until the sweep ends: trials with ``left`` epochs to go, in order, each taking the
    first of ``at_once`` slots to free up (Tune starts a trial when one ends). One trial alone takes
    as long as itself, however many could run beside it."""
    slots = [0] * max(1, at_once)
    for n in left:
        heapq.heappush(slots, heapq.heappop(slots) + n)
    return max(slots)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
