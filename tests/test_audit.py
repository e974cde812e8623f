"""`raysweep audit`: the best configurations a scheduler stopped, trained to the end and compared with
the winner, as a sweep linked to the audited one."""

from __future__ import annotations

import contextlib
import io

import fakes
import pytest

from raysweep import cli, stats, tracking
from raysweep.search_spaces import configs_of
from raysweep.studies import get_study
from raysweep.study import Study
from raysweep.sweep import SweepOptions, plan_sweep, run_sweep
from raysweep.sweep.audit import Candidate, listed_space, report_lines


def _asha_sweep(tmp_path, name: str) -> None:
    """4 configurations one at a time, best first: ASHA stops filters 32, 16 and 8 at epoch 2."""
    run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=4, scheduler="asha", max_concurrent=1, name=name,
                           experiment="asha", overrides={"filters": "64,32,16,8"}, storage_path=str(tmp_path / "r"),
                           quiet=True), fakes.scripted_trainable)  # fmt: skip


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_audit_reruns_the_best_stopped_configurations_to_the_end_and_says_its_verdict(
    ray_session, tracking_uri, tmp_path, monkeypatch
) -> None:
    _asha_sweep(tmp_path, "pruned")
    monkeypatch.setattr(Study, "trainable", lambda self: fakes.scripted_trainable)  # the CLI trains the fake
    code, out = _cli("audit", "pruned", "--top", "2", "--quiet")
    assert code == 0, out
    assert "verdict: early stopping cost nothing measurable" in out
    assert "filters=32 (val_acc" in out and "at epoch 2" in out and "filters=16" in out and "filters=8" not in out

    c = tracking.client(tracking_uri)
    audit = tracking.find_sweep_run(tracking_uri, "audit-pruned")
    assert audit.data.tags["raysweep.audit_of"] == "pruned" and audit.data.params["audit_of"] == "pruned"
    assert audit.data.params["scheduler"] == "fifo"
    assert tracking.find_sweep_run(tracking_uri, "pruned").data.tags["raysweep.audited_by"] == "audit-pruned"
    assert c.get_experiment(audit.info.experiment_id).name == "asha-audit"  # never ranked beside the reruns' originals
    info = tracking.TrackingInfo(tracking_uri, audit.info.experiment_id, audit.info.run_id)
    runs = {r.data.params["filters"]: r for r in tracking.child_runs(tracking_uri, info)}
    assert sorted(runs) == ["16", "32"]  # the two best at their rung, nothing else
    for r in runs.values():  # trained to the end, with the audited sweep's seed
        assert r.info.status == "FINISHED" and r.data.tags[tracking.OUTCOME_TAG] == "completed"
        assert [m.step for m in c.get_metric_history(r.info.run_id, "val_acc")] == [1, 2, 3, 4]
        assert r.data.params["seed"] == "0" and r.data.params["epochs"] == "4"

    code, again = _cli("audit", "pruned", "--top", "2", "--quiet")  # a second audit continues: reruns nothing
    assert code == 0 and "verdict: early stopping cost nothing measurable" in again
    assert {r.info.run_id for r in tracking.child_runs(tracking_uri, info)} == {r.info.run_id for r in runs.values()}


def test_audit_dry_run_plans_the_rerun_and_trains_nothing(ray_session, tracking_uri, tmp_path) -> None:
    _asha_sweep(tmp_path, "plan-only")
    code, out = _cli("audit", "plan-only", "--top", "1", "--dry-run")
    assert code == 0, out
    assert "the 1 best configuration(s) a scheduler stopped, trained to 4 epochs with seeds [0]" in out
    assert "dry run of sweep audit-plan-only: study cnn" in out and "4 epochs per trial, 1 trial (grid)" in out
    (line,) = [ln for ln in out.splitlines() if ln.strip().startswith("1. ")]
    assert "filters=32" in line and "seed=0" in line and line.endswith("[to run]")  # the best stopped one only
    assert tracking.find_sweep_run(tracking_uri, "audit-plan-only") is None  # no MLflow run written


def test_audit_of_an_unknown_sweep_is_one_line_and_status_2(tracking_uri, capsys) -> None:
    assert cli.main(["audit", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no sweep named 'nope'" in err
    assert cli.main(["audit", "nope", "--top", "0"]) == 2
    assert "--top must be >= 1" in capsys.readouterr().err


def test_an_explicit_list_of_configurations_runs_exactly_those_with_every_seed() -> None:
    study = get_study("cnn")
    configs = [{"lr": 0.01, "filters": 8}, {"lr": 0.001, "filters": 32}]
    base = plan_sweep(SweepOptions(study="cnn", space="report_grid", repeats=2)).space
    full = [{**{d.name: d.values[0] for d in base.dims}, **c} for c in configs]
    plan = plan_sweep(SweepOptions(study="cnn", space="report_grid", repeats=2, configs=full))
    got = configs_of(plan.space)
    want = [{**c, "seed": s} for c in full for s in (0, 1)]
    key = lambda c: sorted((k, str(v)) for k, v in c.items())  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    assert listed_space(base, study.hypers, full).stages == ()


def test_the_verdict_names_a_stopped_configuration_that_finishes_better() -> None:
    winner = {0: 0.80, 1: 0.81, 2: 0.79}
    late = Candidate({"filters": 8}, 0.50, 2, {0: 0.85, 1: 0.86, 2: 0.85})
    late.comparison = stats.compare(late.finished, winner, "max")
    lines, verdict = report_lines({"filters": 64}, winner, [late], "val_acc")
    assert verdict.startswith("stopped filters=8, which finishes +0.0533 val_acc [95% CI +0.")
    assert verdict.endswith("better than the winner")
    assert lines[-1] == f"verdict: {verdict}" and "(val_acc 0.5000 at epoch 2)" in lines[1]

    slow = Candidate({"filters": 4}, 0.40, 2, {0: 0.70, 1: 0.72, 2: 0.69})
    slow.comparison = stats.compare(slow.finished, winner, "max")
    assert report_lines({"filters": 64}, winner, [slow], "val_acc")[1] == "early stopping cost nothing measurable"


@pytest.mark.parametrize("mode, values, best", [("max", (0.5, 0.7, 0.6), 0.7), ("min", (0.5, 0.7, 0.6), 0.5)])
def test_candidates_are_the_best_at_their_rung(mode, values, best) -> None:
    from types import SimpleNamespace

    from raysweep.sweep.audit import stopped_candidates

    study = SimpleNamespace(mode=mode, metric="m", hypers=get_study("cnn").hypers)
    runs = [SimpleNamespace(data=SimpleNamespace(
        tags={tracking.OUTCOME_TAG: "stopped_by_scheduler", "raysweep.stop.value": str(v), "raysweep.stop.rung": "2",
              tracking.KEY_TAG: str(i)},
        params={"filters": str(8 * (i + 1)), "seed": "0"}, metrics={}), info=SimpleNamespace(run_id=str(i)))
        for i, v in enumerate(values)]  # fmt: skip
    top = stopped_candidates(runs, study, 2)
    assert [c.at_rung for c in top][0] == best and len(top) == 2 and top[0].rung == 2
