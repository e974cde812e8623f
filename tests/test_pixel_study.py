"""The pixel study: its task through the shared loop (LocalSession), a one-process trial and a
2-worker Ray Train trial through the real sweep driver, resource refusals, spaces and data helpers.

CPU-small: 8x8 synthetic images, h <= 16, a few batches. The one Ray Train trial costs ~30 s (most
of it TorchTrainer start-up); everything else runs in seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from fakes import Stop, StopAfterFirstReport

from raysweep import sweep, tracking
from raysweep.data.cifar10 import downscale, load_lossless_test, lossless_source
from raysweep.search_spaces import SpaceError, configs_of, with_overrides
from raysweep.studies import get_study
from raysweep.sweep import SweepOptions, plan_sweep, run_sweep
from raysweep.trainables.pixel import PixelTask
from raysweep.training import LocalSession, TrialContext, run_trial

TINY = {"model": "row_lstm", "layers": 1, "hidden": 6, "head": 24, "lr": 3e-3, "batch_size": 16, "image_size": 8,
        "train_images": 64, "val_images": 32, "grad_clip": 0.5, "seed": 0}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _ctx(epochs: int, **options: Any) -> TrialContext:
    return TrialContext(study="pixel", data="synthetic", epochs=epochs, metric="val_bpd", mode="min",
                        options={"samples": 0, **options})  # fmt: skip


@pytest.mark.parametrize("model", ["pixelcnn", "row_lstm", "diagonal_bilstm"])
def test_task_reports_bits_per_dim_each_epoch_and_lossless_at_the_end(model, tmp_path) -> None:
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    last = run_trial(PixelTask, {**TINY, "model": model}, _ctx(2), s)
    assert [r["epoch"] for r in s.results] == [1, 2]
    for r in s.results:
        assert {"train_loss", "train_bpd", "val_loss", "val_bpd", "lr"} <= set(r)
        assert r["val_bpd"] == pytest.approx(r["val_loss"] / np.log(2))
        assert 0 < r["train_bpd"] < 8.5 and 0 < r["val_bpd"] < 8.5  # 8 = uniform over 256 levels
    assert "lossless_bpd" not in s.results[0] and 0 < last["lossless_bpd"] < 8.5


def test_resumed_trial_ends_exactly_where_an_uninterrupted_one_does(tmp_path) -> None:
    straight = LocalSession(workdir=str(tmp_path / "a"), cpus=1)
    run_trial(PixelTask, TINY, _ctx(2), straight)
    with pytest.raises(Stop):
        run_trial(PixelTask, TINY, _ctx(2), StopAfterFirstReport(workdir=str(tmp_path / "b"), cpus=1))
    resumed = LocalSession(workdir=str(tmp_path / "b"), cpus=1)
    run_trial(PixelTask, TINY, _ctx(2), resumed)
    assert [r["epoch"] for r in resumed.results] == [2]  # model, optimizer, schedule and batch order restored
    for k in ("train_bpd", "val_bpd", "lossless_bpd"):
        assert resumed.results[-1][k] == pytest.approx(straight.results[-1][k], rel=1e-5)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_trial_completes_through_the_sweep_driver_in_its_own_process_or_on_ray_train_workers(
    workers, ray_session, tracking_uri, tmp_path
) -> None:
    """One worker trains in the Tune trial's own process (no worker group to start); two fit a
    Ray Train TorchTrainer. Either way: one child run, its metrics, artifacts and a checkpoint."""
    storage = tmp_path / "ray"
    opts = SweepOptions(study="pixel", space="quick", data="synthetic", epochs=2, experiment="px",
                        storage_path=str(storage), quiet=True, options={"samples": 4, "workers": workers},
                        overrides={"model": "diagonal_bilstm", "hidden": "8", "head": "32", "train_images": "128",
                                   "val_images": "64"})  # fmt: skip
    res = run_sweep(opts)
    assert res.status == "FINISHED" and [t["status"] for t in res.trials] == ["TERMINATED"]
    c = tracking.client(tracking_uri)
    runs = c.search_runs([c.get_experiment_by_name("px").experiment_id])
    children = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "trial"]
    assert len(children) == 1  # rank 0 alone logs
    assert all(r.info.status == "FINISHED" for r in runs)
    run = children[0]
    assert run.data.tags["raysweep.workers"] == str(workers) and run.data.params["model"] == "diagonal_bilstm"
    assert ("raysweep.worker_cpus" in run.data.tags) == (workers > 1)  # set by the Ray Train launch alone
    for m in ("train_bpd", "val_bpd"):
        assert len(c.get_metric_history(run.info.run_id, m)) == 2
    assert 0 < run.data.metrics["lossless_bpd"] < 8.5
    assert {"samples.png", "model"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    assert res.best["score"] == pytest.approx(run.data.metrics["best_val_bpd"])
    # the trial's checkpoint (Ray Train's or Tune's own) sits in the trial's folder, where `raysweep resume` looks
    found = sweep.find_checkpoints(str(storage), res.name, "pixel", "synthetic")
    assert [v["config"]["model"] for v in found.values()] == ["diagonal_bilstm"]


def test_a_stopped_trials_worker_group_is_released(ray_session) -> None:
    """What the driver does when Tune ends a trial whose process it killed mid-fit (ASHA)."""
    from ray.experimental.internal_kv import _internal_kv_put
    from ray.util.placement_group import placement_group, placement_group_table

    from raysweep.training import _WORKER_GROUP_KEY, release_worker_group

    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])
    assert pg.wait(10)
    _internal_kv_put(_WORKER_GROUP_KEY.format("t-1"), pg.id.hex())
    assert release_worker_group("t-1")
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert not release_worker_group("t-1") and not release_worker_group("never-ran")


@pytest.mark.parametrize(
    "options, gpus, message",
    [({"workers": 8, "worker_cpus": 1}, 0.0, "1 CPU for itself + 8 Ray Train workers x 1 CPU = 9 CPU/0 GPU at once"),
     ({"workers": 2}, 1.0, "2 Ray Train workers x 0.5 CPU + 1 GPU"),
     ({}, 1.0, "1 CPU + 1 GPU, training in its own process")],
)  # fmt: skip
def test_a_request_the_cluster_cannot_place_is_refused_at_once(
    options, gpus, message, ray_session, tracking_uri, tmp_path, monkeypatch
) -> None:
    """At once: before Tune starts a trial that would wait for its placement forever (no clock needed)."""
    monkeypatch.setattr(sweep.tuner.Runner, "tune", lambda *a, **k: pytest.fail("Tune started an unplaceable trial"))
    with pytest.raises(SpaceError) as err:
        run_sweep(SweepOptions(study="pixel", data="synthetic", experiment="refused", options=options,
                               gpus_per_trial=gpus, storage_path=str(tmp_path / "ray"), quiet=True))  # fmt: skip
    assert not (tmp_path / "ray").exists()  # no Tune run folder either
    text = str(err.value)
    assert "\n" not in text and message in text and "cannot place" in text and "--option workers" in text
    assert tracking.client(tracking_uri).get_experiment_by_name("refused") is None  # nothing recorded


@pytest.mark.parametrize(
    "options, message",
    [({"workers": 0}, "workers must be a whole number >= 1"), ({"workers": 1.5}, "whole number"),
     ({"worker_cpus": 0}, "worker_cpus must be a number > 0"), ({"workers": 2, "gpus": 0.5}, "NCCL refuses"),
     ({"worker_cpus": 1}, "worker_cpus is for Ray Train workers")],
)  # fmt: skip
def test_bad_worker_options_are_refused_before_ray(options, message) -> None:
    gpus = options.pop("gpus", 0.0)
    with pytest.raises(SpaceError, match=message):
        plan_sweep(SweepOptions(study="pixel", options=options, gpus_per_trial=gpus))


def test_report_models_ties_each_model_to_its_paper_depth() -> None:
    study = get_study("pixel")
    space = study.space("report_models")
    assert sorted((c["model"], c["layers"]) for c in configs_of(space)) == [
        ("diagonal_bilstm", 7), ("pixelcnn", 15), ("row_lstm", 12)]  # fmt: skip
    assert space.grid_size() == 3 and "3 listed combinations" in space.summary()
    one = with_overrides(space, study.hypers, {"model": "pixelcnn"})
    assert [(c["model"], c["layers"]) for c in configs_of(one)] == [("pixelcnn", 15)]
    flat = with_overrides(space, study.hypers, {"layers": "3"})
    assert sorted((c["model"], c["layers"]) for c in configs_of(flat)) == [
        ("diagonal_bilstm", 3), ("pixelcnn", 3), ("row_lstm", 3)]  # fmt: skip
    with pytest.raises(SpaceError, match="grid only"):
        plan_sweep(SweepOptions(study="pixel", space="report_models", search="random"))
    with pytest.raises(SpaceError, match="image_size=12 is not one of"):
        plan_sweep(SweepOptions(study="pixel", overrides={"image_size": "12"}))


def test_downscale_averages_whole_blocks_and_lossless_source_never_falls_back_to_the_hub(
    tmp_path, monkeypatch
) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    small = downscale(images, 2)
    assert small.shape == (2, 2, 2, 3) and small.dtype == np.uint8
    assert small[1, 0, 1, 2] == np.rint(images[1, 0:2, 2:4, 2].mean())
    assert downscale(images, 4) is not None and (downscale(images, 4) == images).all()

    assert lossless_source("synthetic") == "synthetic"
    assert load_lossless_test("synthetic").images.shape[1:] == (32, 32, 3)
    monkeypatch.delenv("RAYSWEEP_DATA_DIR", raising=False)
    (tmp_path / "cifar10").mkdir()
    assert lossless_source(str(tmp_path / "cifar10")) is None
    assert lossless_source("uoft-cs/cifar10") is None
    (tmp_path / "cifar10-lossless-subset").mkdir()
    assert lossless_source(str(tmp_path / "cifar10")) == str(tmp_path / "cifar10-lossless-subset")
    assert lossless_source(str(tmp_path / "cifar10"), "none") is None


def test_lossless_subset_test_split_loads_from_the_local_copies(data_dir, monkeypatch) -> None:
    monkeypatch.setenv("RAYSWEEP_DATA_DIR", str(data_dir))
    where = lossless_source("uoft-cs/cifar10")
    assert where == str((data_dir / "cifar10-lossless-subset").resolve())
    ll = load_lossless_test(where)
    assert ll.images.shape == (1000, 32, 32, 3) and ll.images.dtype == np.uint8
