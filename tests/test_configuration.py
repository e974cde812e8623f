"""One definition of a configuration, its seeds, its score and the leaky rule, read by the driver and
the report alike; dimension roles reach the report. Pure functions, hand-made records and frames."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from raysweep import configuration as cf
from raysweep.analysis import select
from raysweep.studies import get_study

BASE = {"lr": 0.001, "batch_size": 64, "filters": 32, "layers": 5}


def _run(seed: int, score: float, sweep: str = "s1", **params) -> dict:
    """A row of the runs frame as ``load_runs`` makes it (params typed back, runtime records too)."""
    p = {**BASE, "seed": seed, "epochs": 3, "data": "/data/cifar10", "device": "cpu", "amp": "bf16",
         "amp_reason": "bf16 1.70x faster", **params}  # fmt: skip
    return {"run_id": f"r{seed}-{score}", "study": "cnn", "status": "FINISHED", "outcome": "completed",
            "sweep_run_id": sweep, **{f"params.{k}": v for k, v in p.items()}, "best.val_acc": score}  # fmt: skip


def test_seeds_whose_nodes_probed_bf16_differently_are_one_configuration() -> None:
    df = pd.DataFrame([_run(0, 0.70, amp_reason="bf16 1.70x faster"), _run(1, 0.72, amp_reason="bf16 1.68x faster",
                                                                          device="cuda", data="/other/cifar10")])
    (g,) = select.groups(df)  # main split these into two "configurations"
    assert len(g) == 2 and select.seed_scores(g, "val_acc") == {"0": 0.70, "1": 0.72}
    assert "params.amp_reason" not in select.config_columns(df) and "params.seed" not in select.config_columns(df)
    driver = [{**BASE, "seed": 0}, {**BASE, "seed": 1, "amp_reason": "x"}]
    assert cf.config_id(driver[0]) == cf.config_id(driver[1])
    assert cf.config_of(driver[1]) == cf.config_of(select.params_of(df.iloc[1]), get_study("cnn").hypers) == BASE
    assert cf.config_id({**BASE, "lr": 0.01}) != cf.config_id(BASE)
    assert cf.config_id({**BASE, "epochs": 20}) != cf.config_id({**BASE, "epochs": 2})  # different measurements
    assert cf.config_id({"lr": "0.001", "batch_size": "64"}) == cf.config_id({"lr": 1e-3, "batch_size": 64.0})


def test_the_leaky_rule_and_its_note_are_the_studys() -> None:
    study = get_study("char_rnn")
    assert study.leaky and not study.ranked({"split": "random"}) and study.ranked({"split": "temporal"})
    assert study.ranked({"split": "temporal"}) == cf.is_ranked({"split": "temporal"}, study.leaky)
    assert study.ranking_note() == cf.ranking_note(study.leaky) and "never ranked" in study.ranking_note()
    df = pd.DataFrame([{"params.split": "random"}, {"params.split": "temporal"}])
    assert list(select.ranked(df, study.leaky)) == [False, True]


def test_seed_scores_skip_non_finite_count_a_seed_once_and_runs_without_seed_apart() -> None:
    pairs = [(0, 0.5), (0, 0.7), (1, float("nan")), (None, 0.2), (None, 0.3), ("2", None)]
    assert cf.seed_scores(pairs) == {"0": pytest.approx(0.6), ("run", 3): 0.2, ("run", 4): 0.3}


def test_best_mean_over_seeds_and_a_tie_is_never_a_win() -> None:
    trials = [({"lr": lr, "seed": s}, v, f"{lr}-{s}") for lr, vs in ((0.1, (0.5, 0.6, 0.7)), (0.01, (0.6, 0.7, 0.5)),
                                                                    (1.0, (0.9, 0.1, 0.1))) for s, v in enumerate(vs)]
    groups = cf.rank(cf.group_by_config(trials), "max")
    assert [g.config["lr"] for g in groups] == [0.1, 0.01, 1.0]  # the tie keeps its order; 1.0's lucky seed loses
    c = cf.versus(groups[0], groups[1], "max")
    assert (c.diff, c.verdict) == (pytest.approx(0.0), "within seed noise")
    df = pd.DataFrame([{"study": "cnn", "params.lr": c["lr"], "params.seed": c["seed"], "best.val_acc": v,
                        "status": "FINISHED", "outcome": ""} for c, v, _ in trials])  # fmt: skip
    verdicts = select.against_best(select.groups(df), "val_acc", "max")
    assert verdicts[0] == (None, "best mean, not resolved: vs the runner-up within seed noise")
    assert verdicts[1][1] == "within seed noise" and verdicts[1][0].diff == pytest.approx(0.0)


def test_a_stage_decision_from_one_seed_cannot_tell_and_the_recorded_winner_is_kept() -> None:
    d = cf.decide_stage("lr", [(0.001, {0: 0.5}), (0.01, {0: 0.6})], 0.001, "max")
    assert (d.winner, d.reference, d.replaced, d.resolved) == (0.01, 0.001, True, False)
    assert d.comparison.verdict == "one seed: cannot tell" and d.line().endswith("not resolved (advances by the mean)")
    d = cf.decide_stage("lr", [(0.001, {0: 0.5, 1: 0.6}), (0.01, {0: 0.6, 1: 0.5})], 0.001, "max", winner="0.01")
    assert (d.winner, d.reference) == (0.01, 0.001)  # a tie: the report reads the winner the sweep recorded
    assert cf.decide_stage("lr", [(0.001, {})], 0.001, "max") is None


def test_roles_come_from_the_sweep_and_runtime_records_are_never_dimensions() -> None:
    roles = {"lr": "scientific", "weight_decay": "nuisance", "batch_size": "fixed", "seed": "nuisance"}
    rows = [_run(s, 0.5 + lr + s / 100, lr=lr, weight_decay=wd, amp_reason=f"bf16 1.{s}x")
            for s in (0, 1) for lr, wd in ((0.001, 0.0), (0.01, 5e-4))]  # fmt: skip
    sweeps = pd.DataFrame([{"run_id": "s1", "params.roles": json.dumps(roles)}])
    df = select.attach_roles(pd.DataFrame(rows), sweeps)
    assert select.roles(df) == {"lr": "scientific", "weight_decay": "nuisance", "seed": "nuisance"}
    assert select.scientific_varied(df) == ["lr"] and select.nuisance_varied(df) == ["weight_decay", "seed"]
    old = select.attach_roles(pd.DataFrame(rows), pd.DataFrame({"run_id": ["s1"]}))  # a sweep from before roles
    assert select.scientific_varied(old) == ["lr", "weight_decay"] and select.nuisance_varied(old) == ["seed"]
    assert "amp_reason" not in select.varied(old)


def test_table2_reaches_the_consoles_verdict_when_a_stage_keeps_its_current_value() -> None:
    from raysweep.analysis import cnn
    from raysweep.analysis.registry import StudyRuns
    from raysweep.sweep import SweepOptions, plan_sweep
    from raysweep.sweep.plan import staged_ablation

    scores = {0.001: (0.60, 0.58, 0.62), 0.01: (0.59, 0.55, 0.60)}  # by lr over seeds 0-2: the baseline stays
    space = plan_sweep(SweepOptions(study="cnn", space="report_ablation", repeats=3,
                                    overrides={"lr": "0.001,0.01", "batch_size": "64", "filters": "32",
                                               "layers": "5"})).space  # fmt: skip
    said, rows = [], []

    def run_stage(i: int, label: str, todo: list[dict]) -> list[dict]:
        for c in todo:
            rows.append({**_run(c["seed"], scores[c["lr"]][c["seed"]], lr=c["lr"]), "stage": i, "stage_param": label,
                         "sweep_name": "abl", "start_time": len(rows), "best.train_acc": 0.7})  # fmt: skip
        return [{"config": c, "score": scores[c["lr"]][c["seed"]], "status": "TERMINATED", "key": str(c),
                 "metrics": {}} for c in todo]  # fmt: skip

    (w,) = staged_ablation(space, "val_acc", "max", [], run_stage, said.append)
    assert (w["value"], w["vs_role"], w["resolved"]) == (0.001, "runner-up", False)
    runs = pd.DataFrame(rows).assign(stage=lambda d: d["stage"].astype("Int64"))
    sweeps = pd.DataFrame([{"run_id": "s1", "params.stage1_lr_winner": 0.001}])
    t2 = cnn.table2(StudyRuns("e", "sqlite://", "cnn", runs, sweeps, "val_acc", "max"))
    f = t2.frame
    assert list(zip(f["stage"], f["lr"], f["winner"], strict=True)) == [(0, 0.001, ""), (1, 0.01, ""),
                                                                        (1, 0.001, "yes")]  # fmt: skip
    kept = f.iloc[2]
    assert kept["outcome"] == "completed (ran in stage 0)" and kept["vs"] == "lr=0.01 (runner-up)"
    # differences .01 .03 .02: sd .01; half-width t(n-1) * .01 / sqrt(n) first drops below .02 at n = 4
    assert kept["verdict"] == "within seed noise (about 4 seeds would resolve it); not resolved"
    assert said[-1].strip() in t2.note  # the console's stage line, word for word
