"""What the sweep claims, run for real on synthetic data: searchers, ASHA, repeats, and failure."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import fakes
import numpy as np
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
    assert code == 2 and "needs windows of 65 tokens" in err.err + err.out  # quick: seq_len 64
    assert not (tmp_path / "mlflow.db").exists()


def _small_image_folder(root: Path, side: int) -> Path:
    """A CIFAR-10 copy in the hub's layout whose images are ``side`` x ``side``."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    (root / "plain_text").mkdir(parents=True)
    for split, n in (("train", 200), ("test", 50)):
        imgs = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(n)]
        ds = datasets.Dataset.from_dict({"img": imgs, "label": [i % 10 for i in range(n)]}, features=features)
        ds.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return root


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["cnn", "--data", "synthetic", "--set", "batch_size=1000"],
         "batch_size 1000 is larger than the 900 training images"),
        (["cnn", "--data", "{small}", "--set", "layers=9"], "use at most --set layers=7"),
        (["pixel", "--space", "quick", "--data", "{small}", "--set", "image_size=16"],
         "image_size 16 needs images whose side is a multiple of it; these are 8x8"),
        (["pixel", "--space", "quick", "--data", "synthetic", "--set", "batch_size=1", "--option", "workers=2"],
         "batch_size 1 is smaller than the 2 Ray Train workers"),
    ],
)  # fmt: skip
def test_a_batch_or_model_that_misfits_the_data_is_refused_before_ray(
    argv, says, tmp_path, monkeypatch, capsys
) -> None:
    from raysweep import sweep

    monkeypatch.setattr(sweep, "init_ray", lambda *a, **k: pytest.fail("Ray must not start"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    small = str(_small_image_folder(tmp_path / "small", 8)) if "{small}" in argv else ""
    code = cli.main(["sweep", *(a.replace("{small}", small) for a in argv), "--epochs", "1"])
    err = capsys.readouterr()
    assert code == 2 and says in err.err + err.out, err.err + err.out
    assert not (tmp_path / "mlflow.db").exists()
