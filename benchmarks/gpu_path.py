"""The accelerator path of the CNN study: bf16 autocast, channels_last, data resident on the device,
optional ``torch.compile``, and several small trials sharing one GPU (fractional ``gpus_per_trial``).

Written for ``--device cuda``; on the CPU it runs the same code (bf16 autocast on the CPU,
channels_last, compile with inductor, or the quick ``eager`` backend in smoke mode) so that the
path stays exercised, and the sharing sweep runs against one *declared* GPU (Ray schedules
fractions of it; the trials train on the CPU), which checks scheduling only: its timings are
recorded on CUDA alone.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.common import BenchContext, Run, run_child, time_train_steps

NAME = "gpu_path"
FIGURES = {
    "gpu_path_images_per_s_fp32": ("img/s", "CnnTask.train_epoch, fp32 (amp off), channels_last"),
    "gpu_path_images_per_s_bf16": ("img/s", "the same with bf16 autocast"),
    "gpu_path_bf16_speedup": ("x", "bf16 / fp32 images/s"),
    "gpu_path_images_per_s_bf16_compile": ("img/s", "bf16 autocast + torch.compile (option compile)"),
    "gpu_path_compile_speedup": ("x", "bf16 + compile / bf16 images/s"),
    "gpu_path_compile_s": ("s", "first compiled step (compilation)"),
    "gpu_path_share_speedup": ("x", "4 small CNN trials: wall at 1 GPU each / wall at 0.25 GPU each (CUDA only)"),
    "gpu_path_share_wall_s": ("s", "the 4-trial sweep with gpus_per_trial=0.25 (CUDA only)"),
    "gpu_path_exclusive_wall_s": ("s", "the 4-trial sweep with gpus_per_trial=1 (CUDA only)"),
}


def _throughput(bc: BenchContext, config: dict[str, Any], amp: str, compile_: Any, warmup: int,
                steps: int) -> tuple[float, float, Any]:  # fmt: skip
    """(images/s, seconds of the warm-up epoch, task) of CnnTask.train_epoch."""
    from raysweep.trainables.cnn import CnnTask
    from raysweep.training import TrialContext, pick_device, seed_everything

    seed_everything(0)
    device = pick_device(bc.device)
    ctx = TrialContext(study="cnn", data=bc.data("cifar10"), epochs=1000, metric="val_acc", mode="max",
                       device=bc.device, amp=amp, options={"compile": compile_})  # fmt: skip
    task = CnnTask({**config, "seed": 0}, ctx, device)
    ips, first = time_train_steps(task, warmup, steps)
    return ips, first, task


def share_child(gpus_per_trial: float, declare_gpu: bool, cpus_per_trial: int, data: str, epochs: int,
                filters: str, root: str) -> dict[str, Any]:  # fmt: skip
    """A quick-space sweep (one trial per value of ``filters``) with fractional GPUs, in a fresh interpreter."""
    import ray

    from raysweep.sweep import SweepOptions, run_sweep

    if declare_gpu:  # no GPU here: declare one so that Ray schedules fractions of it
        ray.init(num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    opts = SweepOptions(study="cnn", space="quick", data=data, epochs=epochs, overrides={"filters": filters},
                        gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, quiet=True,
                        tracking_uri=f"sqlite:///{root}/mlflow.db", storage_path=f"{root}/ray_results",
                        name=f"share-{gpus_per_trial:g}", experiment="gpu_share")  # fmt: skip
    t0 = time.perf_counter()
    result = run_sweep(opts)
    wall = time.perf_counter() - t0
    ray.shutdown()
    return {"wall": wall, "statuses": [t["status"] for t in result.trials]}


def run(bc: BenchContext) -> Run:
    torch.set_num_threads(bc.threads)
    cuda = bc.device == "cuda"
    config = bc.pick({"filters": 8, "layers": 3, "batch_size": 32, "lr": 3e-3},
                     {"filters": 32, "layers": 5, "batch_size": 64, "lr": 3e-3},
                     {"filters": 64, "layers": 7, "batch_size": 256, "lr": 3e-3} if cuda else
                     {"filters": 32, "layers": 5, "batch_size": 64, "lr": 3e-3})  # fmt: skip
    warmup, steps = bc.pick((1, 3), (5, 30), (10, 100) if not cuda else (20, 300))
    out = Run()
    fp32, _, _ = _throughput(bc, config, "off", None, warmup, steps)
    bf16, _, task = _throughput(bc, config, "bf16", None, warmup, steps)
    out.figures.update(gpu_path_images_per_s_fp32=fp32, gpu_path_images_per_s_bf16=bf16,
                       gpu_path_bf16_speedup=bf16 / fp32)  # fmt: skip
    resident = isinstance(task.images, torch.Tensor) and task.images.device.type == task.device.type
    layout = all(p.is_contiguous(memory_format=torch.channels_last) for p in task.model.parameters() if p.dim() == 4)
    out.notes.append(f"model {config['filters']}x{config['layers']}, batch {config['batch_size']}, {steps} steps; "
                     f"training set resident on the device: {resident}; conv weights channels_last: "
                     f"{layout}")  # fmt: skip
    if bc.quick and not cuda:
        out.skipped["gpu_path_images_per_s_bf16_compile"] = "quick mode on the CPU: inductor compile takes minutes"
    else:
        backend = "eager" if bc.smoke else 1
        comp, first, _ = _throughput(bc, config, "bf16", backend, max(warmup, 2), steps)
        out.figures.update(gpu_path_images_per_s_bf16_compile=comp, gpu_path_compile_speedup=comp / bf16,
                           gpu_path_compile_s=first)  # fmt: skip
        out.notes.append(f"compile: backend {'eager (smoke)' if bc.smoke else 'inductor'}; the first warm-up epoch "
                         "includes compilation")  # fmt: skip
    root = bc.workdir / f"gpu_share-{time.time_ns()}"
    root.mkdir(parents=True)
    cpus = max(1, bc.threads // 4) if cuda else 1
    kw = {"declare_gpu": not cuda, "cpus_per_trial": cpus, "data": bc.data("cifar10") if cuda else "synthetic",
          "epochs": bc.pick(1, 1, 2), "filters": bc.pick("4,8", "8,12,16,24", "8,12,16,24"),
          "root": str(root)}  # fmt: skip
    shared, _ = run_child("benchmarks.gpu_path:share_child", {"gpus_per_trial": 0.25, **kw})
    if any(s != "TERMINATED" for s in shared["statuses"]):
        raise RuntimeError(f"fractional-GPU sweep did not finish: {shared['statuses']}")
    if cuda:
        exclusive, _ = run_child("benchmarks.gpu_path:share_child", {"gpus_per_trial": 1.0, **kw})
        out.figures.update(gpu_path_share_wall_s=shared["wall"], gpu_path_exclusive_wall_s=exclusive["wall"],
                           gpu_path_share_speedup=exclusive["wall"] / shared["wall"])  # fmt: skip
        out.notes.append(f"sharing: 4 quick-space CNNs (filters 8/12/16/24), {kw['epochs']} epochs, {cpus} CPUs "
                         "per trial")  # fmt: skip
    else:
        out.notes.append(f"fractional GPUs: a {len(shared['statuses'])}-trial sweep at gpus_per_trial=0.25 ran on "
                         f"one declared GPU (scheduling check; {shared['wall']:.1f} s, trials trained on the "
                         "CPU)")  # fmt: skip
    return out
