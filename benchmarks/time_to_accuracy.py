"""Time to accuracy on real CIFAR-10: the ``fast`` cnn space trained by the study's own trainable in
a one-trial sweep sized to 30 minutes (and, separately, to 10), plus the per-epoch time of the
report's baseline and optimized CNNs.

The recipe is the ``fast`` space (``raysweep.search_spaces.cnn``): airbench94's recipe and net
(conv groups 64/256/256 with pooling inside each, a frozen 2x2 patch-whitening first conv,
GELU, BatchNorm biases at 64x the learning rate, SGD with Nesterov momentum under the one-cycle
schedule, label smoothing 0.2, Lookahead of the weights, alternating flips, test predictions averaged
over mirror images and 1-px shifts), batch 256, bf16 autocast where ``--amp auto`` finds it faster.
Until 2026-12-07 it was the report-family 32x8 CNN, now ``fast_report_net``: ``SPACE`` picks the one timed.

How a budget is used: a probe, the same one-trial sweep for ``PROBE_EPOCHS`` epochs (discarded; one a seed),
times its last epoch as the trial trains it (in a Ray worker, in the precision ``--amp auto`` picks there;
a first epoch also carries warm-up: 118 s against the 108 s of the epochs after it, once); the sweep
then runs ``raysweep sweep cnn --space fast --epochs N`` with the largest N whose epochs (training
and validation) fit the budget at that speed with a ``TRIAL_SLOWDOWN`` margin, so the one-cycle
schedule ends with the budget. It trains on the
study's 45,000 training images (5,000 validation pick the best epoch; no early stopping) and the
figure is the run's ``test_acc`` in MLflow. Each repetition uses the next seed (0, 1, ...; the
10-minute sweep runs for the first ``TEN_MIN_SEEDS``); the budget counted is the trial's
epoch time (MLflow ``epoch_time_s``), not Ray start-up or the final test pass. A run whose epochs
overran the budget by more than 3 % is reported, not hidden (note).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.common import BenchContext, Run, cnn_task, time_train_steps

NAME = "time_to_accuracy"
MAX_REPEATS = 2  # 30-minute trainings: two seeds
SPACE = "fast"
BASELINE = {"filters": 32, "layers": 5, "batch_size": 64, "lr": 1e-3}  # the report's baseline CNN
OPTIMIZED = {"filters": 64, "layers": 7, "batch_size": 16, "lr": 1e-3}  # the report's optimized CNN
STUDY_TRAIN_IMAGES = 45_000  # a study trial trains on 90% of the 50,000 (10% validation)
OVERRUN = 1.03  # epochs may overrun the budget by this much before the run is called over budget
# The margin over the probe's epoch. Probing in the benchmark's own process instead under-estimated
# a sweep's epochs by 4-5 % (32x7 net), 9 % and, in the full suite of 2026-12-04, 14 % (32x8 net: 54
# epochs of 34.6 s, 1868 s, 3.8 % over 30 minutes). The one-epoch probe sweep errs the other way: at
# 9981d5b it timed 39.0 and 37.2 s, and the 30-minute trials then trained at 37.5 and 36.4 s.
TRIAL_SLOWDOWN = 1.03
FIGURES = {
    "cnn_test_acc_30min": ("", "test accuracy of the fast space trained in a one-trial sweep sized to 30 minutes "
                               "(target >= 0.94)"),
    "cnn_test_acc_10min": ("", "the same, a separate sweep sized to 10 minutes (target >= 0.92)"),
    "cnn_test_acc_5min": ("", "the same sized to 5 minutes: the GPU check's run (--device cuda only)"),
    "cnn_epoch_s_baseline": ("s", "one study epoch (45,000 images + 5,000 validation) of the 32x5 CNN, batch 64, "
                                  "fp32 (bf16 on CUDA); from a fraction of an epoch, scaled"),
    "cnn_epoch_s_optimized": ("s", "the same for the 64x7 CNN, batch 16"),
    "tta_epochs_30min": ("", "epochs that fit the 30-minute budget at the probed speed (less TRIAL_SLOWDOWN)"),
    "tta_train_s_30min": ("s", "the 30-minute run's epoch time, summed (training + validation)"),
    "tta_train_s_10min": ("s", "the 10-minute run's epoch time, summed"),
    "tta_train_s_5min": ("s", "the 5-minute run's epoch time, summed (--device cuda only)"),
    "tta_images_per_s": ("img/s", "training images/s of the 30-minute run (its epochs, validation included)"),
}
PROBE_EPOCHS = 2  # the probe's epochs: the last one, past the warm-up, sizes the budgets
TEN_MIN_SEEDS = 2  # the 10-minute sweep runs for this many seeds (the first repetitions), the 30-minute for all
_seeds = iter(range(1000))  # each repetition trains the next seed


def _eval_s(task: Any, n: int = 1000) -> float:
    """Seconds of one validation pass of the whole validation split, from ``n`` images, scaled."""
    n = min(n, len(task.val_idx))
    if task.device.type == "cuda":  # a GPU's first pass also picks its kernels, which no epoch repeats
        task._predict(task.images, task.labels, task.val_idx[:n])
    t0 = time.perf_counter()
    task._predict(task.images, task.labels, task.val_idx[:n])
    return (time.perf_counter() - t0) * len(task.val_idx) / n


def epoch_seconds(bc: BenchContext, config: dict[str, Any], warmup: int, steps: int) -> float:
    """One study epoch (train on 45,000, evaluate 5,000) in fp32 on the CPU (bf16 on CUDA), from
    ``steps`` training steps and a 1,000-image validation pass, scaled."""
    task = cnn_task(bc, config, amp="bf16" if bc.device == "cuda" else "off")
    train_ips = time_train_steps(task, warmup, steps)[0]
    return STUDY_TRAIN_IMAGES / train_ips + _eval_s(task)


def one_trial_sweep(bc: BenchContext, seed: int, epochs: int, name: str) -> tuple[Any, list[float]]:
    """The ``SPACE`` space as ``raysweep sweep cnn`` trains it, one trial of ``epochs``: its MLflow run and
    the seconds of each epoch (``epoch_time_s``)."""
    from raysweep import tracking
    from raysweep.search_spaces.cnn import SPACES
    from raysweep.sweep import SweepOptions, run_sweep

    uri = f"sqlite:///{bc.workdir / 'tta_mlflow.db'}"
    opts = SweepOptions(study="cnn", space=SPACE, data=bc.data("cifar10"), epochs=epochs, tracking_uri=uri,
                        storage_path=str(bc.workdir / "tta_ray"), name=f"{name}-{time.time():.0f}",
                        overrides={"seed": str(seed)}, cpus_per_trial=bc.threads, patience=epochs,
                        gpus_per_trial=1.0 if bc.device == "cuda" else 0.0, device=bc.device, quiet=True)  # fmt: skip
    if bc.smoke:  # a tiny net of the kind SPACE names
        grouped = any(d.name == "widths" for d in SPACES[SPACE].dims)
        opts.overrides.update({"widths": "8-16-16"} if grouped else {"filters": "8", "layers": "3"})
    res = run_sweep(opts)
    (run,) = tracking.child_runs(uri, res.tracking)
    history = tracking.client(uri).get_metric_history(run.info.run_id, "epoch_time_s")
    return run, [m.value for m in sorted(history, key=lambda m: m.step)]


def budgeted_sweep(bc: BenchContext, seed: int, budget: float, tag: str, probe: tuple[Any, float]) -> dict[str, Any]:
    """A one-trial ``SPACE`` sweep with as many epochs as fit ``budget`` seconds at the speed of ``probe``
    (the seed's probe sweep: its MLflow run and the seconds of its last epoch); what MLflow holds of it."""
    probe_run, epoch_s = probe
    epochs = max(1, int(budget / (epoch_s * TRIAL_SLOWDOWN)))
    run, history = one_trial_sweep(bc, seed, epochs, f"tta-{tag}-seed{seed}")
    trained = sum(history)
    return {"acc": run.data.metrics.get("test_acc", float("nan")), "epochs": epochs, "epochs_done": len(history),
            "trained": trained, "probe_epoch_s": epoch_s, "probe_run_id": probe_run.info.run_id,
            "amp": probe_run.data.params.get("amp"), "amp_run": run.data.params.get("amp"),
            "run_id": run.info.run_id, "status": run.info.status, "budget": budget,
            "images_per_s": STUDY_TRAIN_IMAGES * len(history) / max(trained, 1e-9)}  # fmt: skip


def run(bc: BenchContext) -> Run:
    torch.set_num_threads(bc.threads)
    out = Run()
    dev = bc.device
    warm, steps_b, steps_o = bc.pick((1, 3, 2), (3, 40, 40), (5, 150, 100))
    out.figures["cnn_epoch_s_baseline"] = epoch_seconds(bc, BASELINE, warm, steps_b)
    out.figures["cnn_epoch_s_optimized"] = epoch_seconds(bc, OPTIMIZED, warm, steps_o)
    out.notes.append(f"epoch times from {steps_b} (baseline) / {steps_o} (optimized) training steps after {warm} "
                     "warm-up steps and a 1,000-image validation pass, scaled to 45,000 + 5,000 images")  # fmt: skip
    if bc.quick:
        for k in ("cnn_test_acc_10min", "cnn_test_acc_30min"):
            out.skipped[f"{k}_{dev}"] = "not run in quick mode (30- and 10-minute trainings)"
        return out
    seed = next(_seeds)
    if dev == "cuda":  # the GPU check's budget: a GPU is lent for minutes, not hours
        budgets = [("5min", bc.pick(8.0, None, 300.0))]
    else:
        budgets = [("30min", bc.pick(16.0, None, 1800.0)), ("10min", bc.pick(8.0, None, 600.0))]
        budgets = budgets[: 2 if seed < TEN_MIN_SEEDS else 1]
    probe_run, probe_epochs = one_trial_sweep(bc, seed, PROBE_EPOCHS, f"tta-probe-seed{seed}")  # for all its budgets
    for tag, budget in budgets:
        r = budgeted_sweep(bc, seed, budget, tag, (probe_run, probe_epochs[-1]))
        out.figures[f"cnn_test_acc_{tag}_{dev}"] = r["acc"]
        out.figures[f"tta_train_s_{tag}"] = r["trained"]
        if tag == "30min":
            out.figures.update({"tta_epochs_30min": r["epochs"], "tta_images_per_s": r["images_per_s"]})
        over = r["trained"] > OVERRUN * budget
        out.notes.append(f"seed {seed}, {tag}: run {r['run_id']} ({r['status']}), {r['epochs']} epochs at a probed "
                         f"{r['probe_epoch_s']:.1f} s/epoch in amp={r['amp']} (trial: {r['amp_run']}); "
                         f"{r['trained']:.0f} s of epochs for a {budget:.0f} s budget"
                         + (" -- OVER BUDGET" if over else "") + f"; test_acc {r['acc']:.4f}")  # fmt: skip
        out.details[f"tta_{tag}"] = r
    if bc.smoke:
        out.notes.append("smoke: budgets scaled to 16 s / 8 s, tiny model, synthetic data")
    return out
