"""Every comparison says whether it is real: mean ± sample std (n), a seed-paired difference with its
95% interval and a verdict, in the summary, the staged ablation and the report; roles reach the report."""

from __future__ import annotations

import contextlib
import io
import re

from raysweep import cli, sweep, tracking
from raysweep.sweep import SweepOptions
from raysweep.sweep.summary import best_trial

BASE = {"lr": 0.001, "batch_size": 64, "filters": 32, "layers": 5, "weight_decay": 0.0, "grad_clip": 1.0,
        "augment": 1}  # fmt: skip


def _trial(config: dict, score: float, i: int) -> dict:
    return {"config": config, "score": score, "status": "TERMINATED", "key": f"k{i}", "run_id": f"run{i}",
            "metrics": {"test_acc": score - 0.01}}  # fmt: skip


def test_the_summary_names_the_best_by_its_mean_over_seeds_against_the_runner_up() -> None:
    plan = sweep.plan_sweep(SweepOptions(study="cnn", data="synthetic", repeats=3, overrides={"lr": "0.001,0.01,0.1"}))
    scores = {0.001: (0.60, 0.50, 0.55), 0.01: (0.56, 0.57, 0.58), 0.1: (0.90, 0.10, 0.10)}  # 0.1: one lucky seed
    trials = [_trial({**BASE, "filters": 8, "lr": lr, "seed": s}, v, 3 * j + s)
              for j, (lr, vs) in enumerate(scores.items()) for s, v in enumerate(vs)]  # fmt: skip
    best = best_trial(trials, "max")
    assert (best["config"]["lr"], best["score"]) == (0.01, 0.58)  # the best mean, not the lucky 0.90
    res = sweep.SweepResult("s", tracking.TrackingInfo("sqlite://", "0", "p"), trials, best)
    text = sweep.summary(res, plan)
    assert "best val_acc: 0.5700 ± 0.0100 (n=3)" in text and "test_acc    : 0.5600 ± 0.0100 (n=3)" in text
    runner = next(line for line in text.splitlines() if "vs runner-up" in line)
    # hand-computed: paired differences -.04 .07 .03 -> mean .02, sd .05568, t(2) = 4.3027 -> half-width .13831
    assert "lr=0.001 filters=8 0.5500 ± 0.0500 (n=3): +0.0200 [95% CI -0.1183, +0.1583], paired over 3 seeds" in runner
    assert "within seed noise" in runner and runner.endswith("not a resolved win")


def test_the_report_plots_and_lists_scientific_dims_never_runtime_records(tracking_uri) -> None:
    from test_analysis import _sweep
    from test_analysis import _trial as logged

    from raysweep.analysis import generic
    from raysweep.analysis.report import study_runs

    roles = '{"lr": "scientific", "weight_decay": "nuisance", "seed": "nuisance", "batch_size": "fixed"}'
    info = _sweep(tracking_uri, "roles", "cnn", "cnn-roles", metric="val_acc", roles=roles)
    for seed in (0, 1):
        for lr, wd in ((0.001, 0.0), (0.01, 5e-4)):
            rid = logged(info, "cnn", {**BASE, "lr": lr, "weight_decay": wd, "seed": seed},
                         {"val_acc": [0.5, 0.6 + lr + seed / 100]})  # fmt: skip
            tracking.RunLogger(tracking_uri, rid).log_params({"amp": "bf16", "amp_reason": f"bf16 1.{70 - 2 * seed}x"})
    r = study_runs("roles", tracking_uri)["cnn"]
    fig = generic.hparam_figure(r)
    assert [ax.get_xlabel() for ax in fig.fig.axes] == ["lr"]  # main: amp_reason, lr, weight_decay
    assert "nuisance, not plotted: weight_decay, seed" in fig.title
    t = generic.trials_table(r).frame
    assert len(t) == 2 and list(t.columns[:3]) == ["lr", "weight_decay (nuisance)", "seeds (nuisance)"]
    assert "amp_reason" not in t.columns and list(t["seeds (nuisance)"]) == ["0, 1", "0, 1"]
    assert t["verdict"].iloc[0].startswith("best") and t["verdict"].iloc[1] == "worse"


def test_a_repeated_staged_ablation_says_for_every_stage_whether_its_winner_is_real(ray_session, tracking_uri,
                                                                                    tmp_path) -> None:  # fmt: skip
    argv = ["sweep", "cnn", "--space", "report_ablation", "--repeats", "3", "--data", "synthetic", "--epochs", "1",
            "--set", "lr=0.001,0.01", "--set", "batch_size=64", "--set", "filters=4", "--set", "layers=2",
            "--experiment", "honest", "--storage-path", str(tmp_path / "r")]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
        assert cli.main(["report", "--experiment", "honest", "--out", str(tmp_path / "rep")]) == 0
    text = out.getvalue()
    spread = r"\d\.\d{4} ± \d\.\d{4} \(n=3\)"
    assert re.search(rf"stage 0 baseline: val_acc {spread}\n", text), text[-3000:]
    winner = re.search(rf"stage 1 winner: lr=(0\.001|0\.01) \(val_acc {spread}\)\n  (vs lr=.*)\n", text)
    assert winner, text[-3000:]
    line = winner.group(2)
    assert re.search(r"[+-]\d\.\d{4} \[95% CI [+-]\d\.\d{4}, [+-]\d\.\d{4}\], paired over 3 seeds: "
                     r"(better|worse|within seed noise)", line), line  # fmt: skip
    assert line.endswith(("; resolved", "; not resolved (advances by the mean)"))
    assert f"    {line}" in text.split("\nsweep ")[-1]  # the summary repeats it
    table2 = (tmp_path / "rep" / "tables" / "cnn_table2.md").read_text()
    assert table2.count("(n=3)") >= 2 * 2  # train and val accuracy of each stage's rows
    row = next(r for r in table2.splitlines() if "| yes |" in r)
    assert line.split(": ", 1)[1].split(" [")[0] in row and "paired" not in row  # the same difference ...
    verdict = line.rsplit(": ", 1)[1].split(";")[0].split(" (")[0]
    assert verdict in row and ("not resolved" in row) == ("not resolved" in line)  # ... and the same verdict
    note = (tmp_path / "rep" / "report.md").read_text()
    assert line in note  # Table 2's note carries the console's line word for word
    parent = tracking.client(tracking_uri).get_run(_parent(tracking_uri, "honest"))
    assert '"seed": "nuisance"' in parent.data.params["roles"] and '"lr": "scientific"' in parent.data.params["roles"]


def _parent(uri: str, experiment: str) -> str:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    (run,) = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.KIND_TAG}` = 'sweep'")
    return run.info.run_id

