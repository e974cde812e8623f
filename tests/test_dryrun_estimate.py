"""The dry run's estimate is arithmetic on measured step times: checked here with known ones, no clock.

How close the estimate comes to a real sweep is a benchmark figure (``dry_run_estimate_ratio`` in
benchmarks/dry_run.py), not a test: it depends on the machine and its load.
"""

from __future__ import annotations

from typing import Any

import pytest

from raysweep.sweep import SweepOptions, plan_sweep
from raysweep.sweep import dryrun as dr
from raysweep.sweep.plan import config_id


def _cost(step_s: float, steps: int = 100, eval_s: float = 0.5, ckpt_s: float = 0.1, peak: float = 300.0,
          ckpt_mb: float = 2.0) -> dr.ShapeCost:  # fmt: skip
    return dr.ShapeCost({}, step_s, steps, eval_s, peak, ckpt_mb, ckpt_s)


def _trial_s(step_s: float, steps: int, eval_s: float, ckpt_s: float, epochs: int) -> float:
    """One trial by hand: start-up, each epoch (steps, validation, checkpoint, report), test pass, artifacts."""
    return dr.START_S + epochs * (step_s * steps + eval_s + ckpt_s + dr.REPORT_S) + eval_s + dr.FINISH_S


def test_total_waves_and_concurrency_follow_from_the_step_times() -> None:
    costs = [_cost(0.01), _cost(0.02, peak=500.0), _cost(0.01), _cost(0.04, ckpt_mb=3.0), _cost(0.02)]
    est = dr.estimate(costs, epochs=3, at_once=2)
    by_hand = [_trial_s(s, 100, 0.5, 0.1, 3) for s in (0.01, 0.02, 0.01, 0.04, 0.02)]
    assert est.trial_s == pytest.approx(by_hand)
    assert by_hand[0] == pytest.approx(dr.START_S + 3 * (1.0 + 0.6 + dr.REPORT_S) + 0.5 + dr.FINISH_S)
    assert est.concurrent == 2 and est.waves == 3  # 5 trials, 2 at a time: 2 + 2 + 1
    assert est.total_s == pytest.approx(dr.SWEEP_START_S + sum(by_hand) / 2)
    assert est.disk_mb == pytest.approx(4 * 2.0 + 3.0) and est.peak_mb == 500.0

    wide = dr.estimate(costs, epochs=3, at_once=8)  # more room than trials: all at once, one wave
    assert wide.concurrent == 5 and wide.waves == 1
    assert wide.total_s == pytest.approx(dr.SWEEP_START_S + sum(by_hand) / 5)
    assert dr.estimate(costs[:1], epochs=6, at_once=1).total_s == pytest.approx(
        dr.SWEEP_START_S + _trial_s(0.01, 100, 0.5, 0.1, 6))  # fmt: skip
    assert dr.estimate([], epochs=3, at_once=2) == dr.Estimate([], 0, 0, 0.0, 0.0, 0.0)  # all finished: nothing


def test_dry_run_reports_the_estimate_of_its_measured_shapes(monkeypatch) -> None:
    """The dry run itself, with ``measure_shape`` returning known step times: one measurement per
    configuration (seeds share it), every trial to run costed, the estimate returned."""
    measured: list[int] = []

    def known(plan: Any, config: dict[str, Any], data: str, seen: Any = None) -> dr.ShapeCost:
        measured.append(config["filters"])
        return dr.ShapeCost(config, 0.001 * config["filters"], 50, 0.2, 100.0 + config["filters"], 1.5, 0.05)

    monkeypatch.setattr(dr, "measure_shape", known)
    plan = plan_sweep(SweepOptions(study="cnn", space="quick", data="synthetic", epochs=3, repeats=2))
    lines: list[str] = []
    out = dr.dry_run(plan, 3, set(), config_id, "synthetic", say=lines.append)
    assert sorted(measured) == [8, 16]  # 4 trials: 2 configurations x 2 seeds
    by_hand = [_trial_s(0.001 * f, 50, 0.2, 0.05, 3) for f in (8, 8, 16, 16)]
    assert out["to_run"] == 4 and sorted(out["trial_s"]) == pytest.approx(by_hand)
    assert out["concurrent"] == 3 and out["waves"] == 2
    assert out["total_s"] == pytest.approx(dr.SWEEP_START_S + sum(by_hand) / 3)
    assert out["disk_mb"] == pytest.approx(4 * 1.5) and out["peak_mb"] == 116.0
    assert any(line.startswith("estimate: 4 trial(s) to run") for line in lines), lines
