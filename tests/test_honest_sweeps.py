"""What the sweep claims, run for real on synthetic data: searchers, ASHA, repeats, and failure."""

from __future__ import annotations

import contextlib
import io

import fakes
import pytest

from raysweep import cli, tracking
from raysweep.sweep import SweepOptions, run_sweep


def _opts(tmp_path, **kw) -> SweepOptions:
    return SweepOptions(**{"study": "cnn", "data": "synthetic", "epochs": 2, "storage_path": str(tmp_path / "r"),
                           "quiet": True, **kw})  # fmt: skip


@pytest.mark.parametrize("search", ["optuna", "qmc"])
def test_searchers_finish_n_distinct_configurations(search, ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(_opts(tmp_path, space="tune_lr", search=search, num_samples=4), fakes.scripted_trainable)
    assert res.status == "FINISHED" and len(res.trials) == 4
    assert all(t["status"] == "TERMINATED" for t in res.trials)
    assert len({(t["config"]["lr"], t["config"]["weight_decay"]) for t in res.trials}) == 4


def test_asha_stops_a_trial_early_and_its_run_says_so(ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(_opts(tmp_path, epochs=4, scheduler="asha", overrides={"filters": "64,32,16,8,4,2"},
                          options={"epoch_s": 0.3}), fakes.scripted_trainable)  # fmt: skip
    assert res.status == "FINISHED" and len(res.trials) == 6
    runs = tracking.child_runs(tracking_uri, res.tracking)
    stopped = [r for r in runs if r.data.tags.get(tracking.OUTCOME_TAG) == "stopped_by_scheduler"]
    assert stopped, [r.data.tags.get(tracking.OUTCOME_TAG) for r in runs]
    c = tracking.client(tracking_uri)
    for r in stopped:
        assert r.info.status == "FINISHED" and len(c.get_metric_history(r.info.run_id, "val_acc")) < 4
    assert res.best["config"]["filters"] == 64  # the best is never the one stopped


def test_repeats_show_as_mean_std_n_in_the_report(ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(_opts(tmp_path, repeats=2, epochs=1, experiment="reps"))  # the real trainable
    assert len(res.trials) == 4 and {t["config"]["seed"] for t in res.trials} == {0, 1}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["report", "--experiment", "reps", "--tracking-uri", tracking_uri,
                         "--out", str(tmp_path / "rep")])  # fmt: skip
    assert code == 0, out.getvalue()[-3000:]
    table = (tmp_path / "rep" / "tables" / "cnn_trials.md").read_text()
    assert "±" in table and "(n=2)" in table


def _boom(config: dict, ctx) -> None:
    raise ValueError("boom: this trainable cannot work")


def test_a_sweep_whose_every_trial_errors_fails_with_one_reason(ray_session, tracking_uri, tmp_path,
                                                                capsys) -> None:  # fmt: skip
    res = run_sweep(_opts(tmp_path, quiet=False, max_failures=0), _boom)
    out = capsys.readouterr().out
    assert res.status == "FAILED"
    assert out.count("every trial failed (2): ") == 1 and "boom: this trainable cannot work" in out
    parent = tracking.client(tracking_uri).get_run(res.tracking.parent_run_id)
    assert parent.info.status == "FAILED"


def test_a_text_shorter_than_a_window_is_refused_before_ray(tmp_path, monkeypatch, capsys) -> None:
    from raysweep import sweep

    monkeypatch.setattr(sweep, "init_ray", lambda *a, **k: pytest.fail("Ray must not start"))
    short = tmp_path / "short.txt"
    short.write_text("First Citizen:\nBefore we proceed any fu")  # 41 characters
    monkeypatch.chdir(tmp_path)
    code = cli.main(["sweep", "char_rnn", "--data", str(short), "--epochs", "1"])
    err = capsys.readouterr()
    assert code == 2 and "needs windows of 129 tokens" in err.err + err.out
    assert not (tmp_path / "mlflow.db").exists()
