"""ASHA on the true clock, with every stop on the record.

Why not Ray's ``ASHAScheduler`` as it is: it counts ``training_iteration`` (reports in this Tune
run), which restarts at 1 when ``raysweep resume`` continues a trial from its checkpoint, and a
fresh Tuner's scheduler remembers none of the earlier attempt's trials (ray-project/ray #30838).
So after a resume it would judge a trial at epoch k+1 as if at epoch 1, against an empty rung.

``RecordedASHA`` decides on the ``epoch`` the training loop reports (its own count, restored from
the checkpoint), and starts with its rungs filled from the recorded metric histories of the
sweep's earlier trials: each earlier trial sits at every rung its history reached, with its value
there, as it would in the scheduler that was lost. A resumed trial takes over its own earlier
entries, so it is not judged again at a rung it already passed. Each stop is kept as a
``Decision`` (rung, value, cut-off, how many trials the cut-off came from); the driver tags the
trial's run with it (``tuner.close_runs``). This module imports Ray: import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from raysweep import tracking
from raysweep.tracking import TrackingInfo

TIME_ATTR = "epoch"  # the loop's own epoch count (training/loop.py reports it; a resumed trial says k+1)
STOP_TAGS = ("rung", "metric", "value", "cutoff", "compared_with", "quantile")  # raysweep.stop.<name>

History = dict[str, dict[int, float]]  # trial key -> {epoch: value of the ranking metric}


@dataclass(frozen=True)
class Decision:
    """Why a scheduler stopped a trial: at ``rung`` (an epoch) its ``metric`` was ``value``, worse
    than ``cutoff``, the ``quantile`` of the values of the ``compared_with`` trials recorded at that
    rung before it."""

    rung: int
    metric: str
    value: float
    cutoff: float
    compared_with: int
    quantile: float

    def tags(self) -> dict[str, Any]:
        """The trial run's tags (``raysweep.stop.<field>``)."""
        return {f"raysweep.stop.{k}": getattr(self, k) for k in STOP_TAGS}


class RecordedASHA(ASHAScheduler):
    """``ASHAScheduler`` on ``TIME_ATTR``, seeded from ``history`` (earlier trials of the sweep, by
    trial key), keeping a ``Decision`` per trial it stops, by trial key (``key_of(config)``)."""

    def __init__(self, key_of: Callable[[dict[str, Any]], str], history: History,
                 on_stop: Callable[[str, Decision], None] | None = None, **kw: Any) -> None:  # fmt: skip
        super().__init__(time_attr=TIME_ATTR, **kw)
        self.key_of = key_of
        self.history = history
        self.on_stop = on_stop  # (trial key, decision) as it is taken: on the record even if the driver dies
        self.decisions: dict[str, Decision] = {}
        self._seeded = False

    def rung_milestones(self) -> list[int]:
        return sorted({int(m) for b in self._brackets for m, _ in b._rungs})

    def _seed(self) -> None:
        """Every earlier trial at every rung it reached, as the lost scheduler had recorded it."""
        self._seeded = True
        for bracket in self._brackets:
            for milestone, recorded in bracket._rungs:
                for key, values in self.history.items():
                    if int(milestone) in values:
                        recorded[key] = self._metric_op * values[int(milestone)]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if not self._seeded:  # here metric and mode are known (set_search_properties came first)
            self._seed()
        key = self.key_of(trial.config)
        for bracket in self._brackets:  # a resumed trial takes over what it recorded before
            for _, recorded in bracket._rungs:
                if key in recorded:
                    recorded[trial.trial_id] = recorded.pop(key)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        judged = None
        t = result.get(self._time_attr)
        if t is not None and self._metric in result and not (t >= self._max_t and self._stop_last_trials):
            bracket = self._trial_info[trial.trial_id]
            for milestone, recorded in bracket._rungs:  # the rung _Bracket.on_result judges it at
                if t >= milestone and trial.trial_id not in recorded:
                    judged = (int(milestone), bracket.cutoff(recorded), len(recorded), bracket.rf)
                    break
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and judged is not None and judged[1] is not None:
            rung, cutoff, n, rf = judged
            key = self.key_of(trial.config)
            self.decisions[key] = Decision(rung, self._metric, float(result[self._metric]),
                                           float(self._metric_op * cutoff), n,
                                           round(1 - 1 / rf if self._mode == "max" else 1 / rf, 4))  # fmt: skip
            if self.on_stop is not None:
                self.on_stop(key, self.decisions[key])
        return action


def tag_stop(info: TrackingInfo | None, key: str, decision: Decision) -> None:
    """Put ``decision`` on the run of trial ``key`` of sweep ``info`` now: a driver killed before it
    closes the runs (``tuner.close_runs``) leaves the stop on the record, and ``raysweep resume``
    then counts the trial as done instead of training it on (``resume.recorded_trials``)."""
    if info is None:
        return
    found = tracking.client(info.uri).search_runs(
        [info.experiment_id], max_results=1,
        filter_string=f"tags.`{tracking.KEY_TAG}` = '{key}' and tags.`{tracking.PARENT_TAG}` = '{info.parent_run_id}'")
    if found:
        tracking.RunLogger(info.uri, found[0].info.run_id).set_tags(decision.tags())


def recorded_history(info: TrackingInfo | None, metric: str, stage: Any = None,
                     epochs: int | None = None) -> History:  # fmt: skip
    """The per-epoch ``metric`` of every trial run of the sweep ``info`` (of stage ``stage`` only,
    None: runs without a stage), by trial key; an epoch logged twice (retrained after a crash)
    keeps its last value. ``epochs``: only epochs up to it."""
    if info is None:
        return {}
    c = tracking.client(info.uri)
    out: History = {}
    for run in tracking.child_runs(info.uri, info):
        if str(run.data.tags.get("raysweep.stage")) != str(stage):
            continue
        key = run.data.tags.get(tracking.KEY_TAG)
        hist = sorted(c.get_metric_history(run.info.run_id, metric), key=lambda m: (m.step, m.timestamp))
        values = {m.step: m.value for m in hist if epochs is None or m.step <= epochs}
        if key and values:
            out[key] = values
    return out
