"""The CUDA paths on real hardware: device choice, bf16, DDP over NCCL, fractional GPUs.

Marked ``gpu`` and skipped where torch sees no CUDA device (every CPU machine, CI included);
``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from raysweep import tracking
from raysweep.sweep import SweepOptions, run_sweep

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (GPU tests)")]  # fmt: skip


def test_cuda_is_chosen_and_amp_auto_probes_the_gpu(tmp_path, tracking_uri) -> None:
    from raysweep.models import build_model
    from raysweep.trainables.cnn import CnnTask
    from raysweep.training import LocalSession, TrialContext, pick_device, run_trial
    from raysweep.training.amp import probe

    assert pick_device("auto").type == "cuda"
    model = build_model("cnn", filters=8, layers=3)
    fp32_s, bf16_s = probe(model, 32, torch.device("cuda"))  # timed on the GPU, the model left on the CPU
    assert 0 < fp32_s and 0 < bf16_s and next(model.parameters()).device.type == "cpu"
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    ctx = TrialContext(study="cnn", data="synthetic", epochs=2, metric="val_acc", mode="max", tracking=info)
    cfg = {"lr": 0.003, "batch_size": 64, "filters": 16, "layers": 3, "seed": 0}
    last = run_trial(CnnTask, cfg, ctx, LocalSession(workdir=str(tmp_path), cpus=1))
    assert last["best_val_acc"] > 0.3 and last["val_loss"] == last["val_loss"]
    (run,) = tracking.child_runs(tracking_uri, info)  # the trial itself ran on the GPU and probed it
    assert run.data.params["device"] == "cuda" and run.data.params["amp_reason"].startswith("cuda probe")


def test_pixel_trial_trains_data_parallel_over_nccl(ray_session, tracking_uri, tmp_path) -> None:
    workers = min(2, torch.cuda.device_count())
    res = run_sweep(SweepOptions(study="pixel", data="synthetic", epochs=1, storage_path=str(tmp_path / "r"),
                                 overrides={"model": "pixelcnn"}, gpus_per_trial=1, quiet=True,
                                 options={"workers": workers, "samples": 0}))  # fmt: skip
    assert res.status == "FINISHED" and len(res.trials) == 1 and res.best is not None
    run = tracking.client(tracking_uri).get_run(res.best["run_id"])
    assert run.data.params["device"] == "cuda" and run.data.params["amp_reason"].startswith("cuda probe")
    assert run.data.tags["raysweep.workers"] == str(workers)


def test_four_cnn_trials_share_one_gpu(ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(SweepOptions(study="cnn", data="synthetic", epochs=1, storage_path=str(tmp_path / "r"),
                                 overrides={"filters": "8,12,16,24"}, gpus_per_trial=0.25, cpus_per_trial=0.5,
                                 quiet=True))  # fmt: skip
    assert res.status == "FINISHED" and len(res.trials) == 4
    assert all(t["status"] == "TERMINATED" and t["score"] is not None for t in res.trials)
    runs = tracking.child_runs(tracking_uri, res.tracking)
    assert len(runs) == 4 and all(r.data.params["device"] == "cuda" for r in runs)
