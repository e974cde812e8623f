"""Sweeps end to end on one session-scoped Ray: MLflow runs, staged ablation, bad input."""

from __future__ import annotations

import os

import pytest

from raysweep import cli, sweep, tracking
from raysweep.sweep import SweepOptions, run_sweep


def test_two_trial_synthetic_sweep_lands_in_mlflow(ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=2, storage_path=str(tmp_path / "r"),
                                 experiment="e2e", quiet=True))  # fmt: skip
    assert res.status == "FINISHED" and len(res.trials) == 2
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name("e2e")
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "trial"]
    assert len(parents) == 1 and len(children) == 2
    assert all(r.data.tags[tracking.PARENT_TAG] == parents[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    for r in children:
        assert {"train_loss", "val_acc", "test_acc", "num_params"} <= set(r.data.metrics)
        assert r.data.params["filters"] in ("8", "16")
        assert r.info.run_name.startswith("train_cnn_")
        artifacts = {a.path for a in c.list_artifacts(r.info.run_id)}
        assert artifacts >= {"confusion_matrix.json", "model"}  # the report draws the matrix from the JSON
        assert "confusion_matrix.png" not in artifacts  # a trial of seconds draws no figure (training.loop)
        assert len(c.get_metric_history(r.info.run_id, "val_acc")) == 2
    assert parents[0].data.tags["raysweep.git_commit"]
    assert parents[0].data.tags["raysweep.data_sha256"]
    assert res.best is not None and res.best["run_id"] in {r.info.run_id for r in children}
    # each trial keeps its last epoch's checkpoint only (tuner.checkpoint_pruner): what a resume reads
    kept = sorted(p.name for p in (tmp_path / "r").glob("*/*/checkpoint_*"))
    assert kept == ["checkpoint_000001"] * 2


def test_ray_workers_started_for_a_sweep_use_one_malloc_arena(ray_session) -> None:
    # placement.init_ray: Tune's thread per trial would otherwise get a malloc arena that keeps
    # returning its pages to the kernel (BENCHMARKS.md, short trials)
    @ray_session.remote(num_cpus=0)
    def arena_max() -> str | None:
        return os.environ.get("MALLOC_ARENA_MAX")

    assert ray_session.get(arena_max.remote()) == "1"


# The fake trainable's score: each stage has a known winner different from the baseline.
_BONUS = {"lr": {0.001: 0.0, 0.01: 0.2, 0.1: -0.5}, "batch_size": {16: 0.0, 32: 0.1, 64: 0.05},
          "filters": {16: 0.0, 32: 0.01, 64: 0.03}, "layers": {3: 0.04, 5: 0.0, 7: 0.02}}  # fmt: skip


def _fake_trainable(config: dict, ctx) -> None:
    from ray import tune

    score = 0.5 + sum(_BONUS[k][config[k]] for k in _BONUS)
    for epoch in range(2):
        tune.report({"val_acc": score - 0.1 * (1 - epoch), "val_loss": 1 - score, "epoch": epoch + 1})


def test_staged_ablation_picks_each_stages_winner(ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(
        SweepOptions(study="cnn", space="report_ablation", data="synthetic", epochs=2,
                     storage_path=str(tmp_path / "r"), quiet=True),
        trainable=_fake_trainable,
    )  # fmt: skip
    winners = [(w["param"], w["value"]) for w in res.stage_winners]
    assert winners == [("lr", 0.01), ("batch_size", 32), ("filters", 64), ("layers", 3)]
    assert len(res.trials) == 1 + 2 + 2 + 2 + 2  # each stage's baseline value is not rerun
    assert res.best["config"] == {**res.best["config"], "lr": 0.01, "batch_size": 32, "filters": 64, "layers": 3}
    assert res.best["score"] == pytest.approx(0.5 + 0.2 + 0.1 + 0.03 + 0.04)
    parent = tracking.client(tracking_uri).get_run(res.tracking.parent_run_id)
    assert parent.data.params["stage2_batch_size_winner"] == "32"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "vgg"], "unknown study 'vgg'"),
        (["sweep", "cnn", "--space", "huge"], "has no space 'huge'"),
        (["sweep", "cnn", "--set", "lr=0"], "lr=0.0 must be > 0"),
        (["sweep", "cnn", "--set", "lr=-0.1"], "must be > 0"),
        (["sweep", "cnn", "--set", "batch_size=0"], "batch_size=0 must be >= 1"),
        (["sweep", "cnn", "--set", "filters=1000"], "filters=1000 must be <="),
        (["sweep", "cnn", "--set", "layers=0"], "layers=0 must be >= 1"),
        (["sweep", "cnn", "--set", "layers=30"], "layers=30 must be <="),
        (["sweep", "cnn", "--set", "momentum=0.9"], "does not take a hyperparameter 'momentum'"),
        (["sweep", "cnn", "--set", "batch_size=1.5"], "not a valid int"),
        (["sweep", "cnn", "--epochs", "0"], "--epochs must be >= 1"),
        (["sweep", "cnn", "--space", "report_ablation", "--search", "optuna"], "staged ablation"),
        (["sweep", "cnn", "--data", "/no/such/folder"], "does not exist"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2_before_ray(argv, message, capsys, monkeypatch, tracking_uri) -> None:
    monkeypatch.setattr(sweep, "init_ray", lambda *a, **k: pytest.fail("Ray started on bad input"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("raysweep: error:")


def test_spaces_lists_every_study_and_space(capsys) -> None:
    assert cli.main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in ("cnn:", "report_ablation", "report_grid", "quick", "lr∈{0.001/0.01/0.1}"):
        assert name in out


def test_sweep_driver_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from raysweep import sweep; from raysweep.context import TrialContext; "
            "p = sweep.plan_sweep(sweep.SweepOptions(study='cnn', data='synthetic')); fn = p.study.trainable(); "
            "assert fn.__name__ == 'train_cnn' and callable(fn); "
            "assert 'torch' not in sys.modules, 'the driver imported torch'")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cnn_space_limits_match_the_model() -> None:
    from raysweep.models import cnn as model
    from raysweep.search_spaces import cnn as space

    assert (space.MAX_LAYERS, space.MAX_FILTERS, space.MAX_STAGES) == (model.MAX_LAYERS, model.MAX_FILTERS,
                                                                      model.MAX_STAGES)  # fmt: skip


def test_amp_setting_is_checked_before_ray() -> None:
    with pytest.raises(sweep.SpaceError, match="--amp must be auto, bf16 or off"):
        sweep.plan_sweep(SweepOptions(study="cnn", data="synthetic", amp="fp8"))


def test_every_search_and_scheduler_choice_has_a_builder() -> None:
    from raysweep.sweep import tuner

    assert set(tuner.SEARCH_ALGS) == set(sweep.SEARCHES)
    assert set(tuner.SCHEDULERS) == set(sweep.SCHEDULERS)


def test_summary_prints_the_test_metrics_the_study_reports() -> None:
    plan = sweep.plan_sweep(SweepOptions(study="cnn", data="synthetic", experiment="e"))
    best = {"config": {"lr": 0.01}, "score": 0.5, "run_id": "r1",
            "metrics": {"test_bpd": 3.25, "test_loss": 2.0, "test_f1_macro": 0.4, "val_acc": 0.5}}  # fmt: skip
    res = sweep.SweepResult("s", tracking.TrackingInfo("sqlite://", "0", "p"), [best], best)
    lines = sweep.summary(res, plan).splitlines()
    assert "  test_bpd    : 3.2500" in lines and "  test_loss   : 2.0000" in lines
    assert not any("f1_macro" in line for line in lines)  # breakdowns are the report's


def test_trials_fit_first_fit_largest_bundle_first() -> None:
    from raysweep.sweep.placement import trials_that_fit

    two_workers = [{"CPU": 1.0, "GPU": 0.0}, {"CPU": 0.5, "GPU": 0.0}, {"CPU": 0.5, "GPU": 0.0}]
    assert trials_that_fit(two_workers, [{"CPU": 2.0, "GPU": 0.0}]) == 1
    assert trials_that_fit(two_workers, [{"CPU": 4.0, "GPU": 0.0}, {"CPU": 1.0, "GPU": 0.0}]) == 2
    assert trials_that_fit([{"CPU": 1.0, "GPU": 1.0}], [{"CPU": 8.0, "GPU": 0.0}]) == 0
