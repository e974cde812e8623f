"""``raysweep reproduce``: every study's report spaces as sweeps, then the report against its source.

One scale is one list of sweeps (``Step``), each a plain ``SweepOptions`` for the one sweep driver:

- ``smoke``: synthetic data, every model shrunk to seconds; the tests run it end to end.
- ``cpu``: real data sized to at most 2 hours of a 2-core CPU, with 2 seeds for every comparison the
  report headlines (Table 2's stages, Table 3, Table 5, Table 6); Table 7 on 16x16 images.
- ``paper``: the report's protocol (20 epochs, 32x32 images, its batch sizes and models), on GPUs,
  with seeds the report did not have.

Resumable: the sweeps are named ``<name>-<study>-<space>``; rerunning with the same ``--name`` skips a
finished sweep and resumes an unfinished one (``resume_sweep``: finished trials are not rerun).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raysweep.search_spaces import SpaceError
from raysweep.sweep.plan import SweepOptions, plan_sweep
from raysweep.text import plural


@dataclass(frozen=True)
class Step:
    """One sweep of a reproduction: a study's report space, shrunk or not."""

    study: str
    space: str
    epochs: int | None  # None: the space's own (the report's)
    repeats: int  # seeds per configuration
    overrides: dict[str, str] = field(default_factory=dict)  # --set
    options: dict[str, Any] = field(default_factory=dict)  # --option
    cpus: float = 1.0  # --cpus-per-trial
    gpus: float = 0.0  # --gpus-per-trial
    amp: str | None = None  # --amp; None: the scale's


@dataclass(frozen=True)
class Scale:
    name: str
    data: str | None  # None: each study's default source ($RAYSWEEP_DATA_DIR, else the hub)
    steps: tuple[Step, ...]
    departs: tuple[str, ...]  # how this scale departs from the report, one line per study
    amp: str = "auto"  # --amp of every sweep


# Sized by `raysweep reproduce --scale cpu --dry-run` on a quiet 2-core AMD EPYC: 3 cnn epochs and 3 char
# epochs of 1M characters estimated 2.3 h; these 60 min, so that a session runs it beside CI and a commit. They
# ran 78 min (docs/reproduction): the cnn sweep 54.5 min against 38, its staged winners (batch 32, filters 64,
# layers 7) being dearer than the baseline the dry run times its later stages around.
CPU_CNN_EPOCHS = 1
CPU_RNN_EPOCHS = 2
CPU_RNN_TOKENS = 500_000  # characters per epoch: a fresh seeded draw of windows, about a quarter of one pass
CPU_PIXEL_EPOCHS = 3
_TINY_RNN = {"embed_dim": "16", "seq_len": "64", "batch_size": "32", "epoch_tokens": "8192"}
_TINY_PIXEL = {"layers": "1", "hidden": "4", "head": "8", "image_size": "4",
               "train_images": "32", "val_images": "16", "batch_size": "16"}  # fmt: skip

SCALES = {
    s.name: s
    for s in (
        Scale(
            "smoke",
            "synthetic",
            (
                Step("cnn", "report_ablation", 1, 1, {"lr": "0.001", "batch_size": "64,16", "filters": "4",
                                                       "layers": "2"}),  # fmt: skip
                Step("char_rnn", "report_split", 1, 1, {"hidden_size": "32", **_TINY_RNN}),
                Step("char_rnn", "report_hidden", 1, 1, {"hidden_size": "32,64", **_TINY_RNN}),
                Step("pixel", "report_models", 1, 1, _TINY_PIXEL, {"samples": 0}),
            ),
            ("every study on synthetic data, one seed, one epoch, models shrunk to seconds: a test of the "
             "pipeline, not of the report",),
            amp="off",  # no bf16 probe: it costs seconds, and oneDNN has no bf16 LSTM for the tiniest shapes
        ),
        Scale(
            "cpu",
            None,
            (
                # Table 2's four stages from the report's baseline, 2 seeds, all 45,000 training images
                Step("cnn", "report_ablation", CPU_CNN_EPOCHS, 2),
                # Tables 5-6: the report's model (1 layer, embeddings 256), 2 seeds
                # fp32: on this CPU's oneDNN the bf16 probe of the LSTM fails ("could not create a primitive
                # descriptor for the LSTM forward propagation primitive")
                Step("char_rnn", "report_split", CPU_RNN_EPOCHS, 2, {"epoch_tokens": str(CPU_RNN_TOKENS)}, amp="off"),
                # hidden 512 on the temporal split is report_split's temporal configuration: trained once
                Step("char_rnn", "report_hidden", CPU_RNN_EPOCHS, 2,
                     {"epoch_tokens": str(CPU_RNN_TOKENS), "hidden_size": "256,1024"}, amp="off"),
                # Table 7 at the pixel study's CPU size (spaces depth/hidden: under a minute an epoch per model)
                Step("pixel", "report_models", CPU_PIXEL_EPOCHS, 1, {"layers": "2", "hidden": "32", "head": "128",
                                                                     "image_size": "16", "train_images": "2048",
                                                                     "val_images": "500", "batch_size": "32"}),
            ),
            (f"cnn (Tables 1-4): {plural(CPU_CNN_EPOCHS, 'epoch')}, not 20, each over all 45,000 training images "
             "(5,000 held out for validation), 32x32, the report's staged grid, models and batch sizes; 2 seeds per "
             "configuration (the report: 1)",
             f"char_rnn (Tables 5-6): {plural(CPU_RNN_EPOCHS, 'epoch')} of {CPU_RNN_TOKENS:,} characters each "
             "(the report trains to early stopping on all of them); 2 seeds per configuration (the report: 1); "
             "Table 6's hidden 512 row is Table 5's temporal split, trained once",
             f"pixel (Table 7): 16x16 images (CIFAR-10 average-pooled), not 32x32; 2 layers, h=32, head 128, not "
             f"the paper's 15/12/7 layers, h=128, head 1024; {plural(CPU_PIXEL_EPOCHS, 'epoch')} of 2,048 images "
             "at batch 32, not 5 of 45,000 at batch 16; 500 validation images; 1 seed"),
        ),
        Scale(
            "paper",
            None,
            (
                Step("cnn", "report_ablation", None, 3, cpus=2.0, gpus=0.25),
                Step("char_rnn", "report_split", None, 3, cpus=2.0, gpus=0.5),
                Step("char_rnn", "report_hidden", None, 3, cpus=2.0, gpus=0.5),
                Step("pixel", "report_models", None, 1, cpus=4.0, gpus=1.0),
            ),
            ("the report's protocol: 20 epochs (cnn, char_rnn), 5 (pixel), 32x32 images, its batch sizes and "
             "models; 3 seeds per configuration for cnn and char_rnn (the report gives none), 1 for pixel",),
        ),
    )
}


def sweep_options(scale: Scale, step: Step, name: str, experiment: str, tracking_uri: str | None,
                  storage_path: str | None, quiet: bool) -> SweepOptions:  # fmt: skip
    """The one sweep of ``step`` as ``raysweep sweep`` would be given it."""
    return SweepOptions(study=step.study, space=step.space, data=scale.data, experiment=experiment,
                        tracking_uri=tracking_uri, storage_path=storage_path, epochs=step.epochs,
                        repeats=step.repeats, overrides=dict(step.overrides), options=dict(step.options),
                        cpus_per_trial=step.cpus, gpus_per_trial=step.gpus, name=f"{name}-{step.study}-{step.space}",
                        amp=step.amp or scale.amp, quiet=quiet)  # fmt: skip


def reproduce(scale: str, name: str | None = None, experiment: str | None = None, tracking_uri: str | None = None,
              out: str | None = None, storage_path: str | None = None, dry_run: bool = False, quiet: bool = False,
              say: Callable[[str], None] = print) -> int:  # fmt: skip
    """Run (or with ``dry_run`` cost) every sweep of ``scale``, then write the report against the source;
    returns the exit status (0: every sweep finished and every report section was written)."""
    from raysweep import tracking

    if scale not in SCALES:
        raise SpaceError(f"unknown --scale {scale!r}; choose one of {', '.join(SCALES)}")
    sc = SCALES[scale]
    name = name or f"reproduce-{scale}"
    experiment = experiment or name
    opts = [sweep_options(sc, s, name, experiment, tracking_uri, storage_path, quiet) for s in sc.steps]
    for o in opts:
        plan_sweep(o)  # every input check, before data, MLflow or Ray
    if dry_run:
        return _dry_run(sc, opts, say)
    from raysweep.sweep import resume_sweep, run_sweep

    uri = tracking.resolve_tracking_uri(tracking_uri)
    status = 0
    for o in opts:
        parent = tracking.find_sweep_run(uri, o.name) if _store_exists(uri) else None
        if parent is not None and parent.info.status == "FINISHED":
            say(f"reproduce: sweep {o.name} finished earlier; not run again")
            continue
        if parent is not None:
            say(f"reproduce: resuming sweep {o.name} ({parent.info.status}): finished trials are not rerun")
            result = resume_sweep(o.name, uri)
        else:
            result = run_sweep(o)
        status |= result.status != "FINISHED"
    from raysweep.analysis import build_report

    res = build_report(experiment, uri, out, say=say, against="report",
                       header=header(sc) + where_and_how_long(uri, [o.name for o in opts]))  # fmt: skip
    say(f"reproduce: report {res.report_md} against the source report; logged as MLflow run {res.run_id}")
    return 1 if status or res.failed else 0


def header(sc: Scale) -> list[str]:
    """What the report says first: the scale and exactly how it departs from the source report."""
    return [f"Reproduction at scale `{sc.name}` (`raysweep reproduce --scale {sc.name}`). How it departs "
            "from the source report:", "", *[f"- {d}" for d in sc.departs], ""]  # fmt: skip


def where_and_how_long(uri: str, sweeps: list[str]) -> list[str]:
    """The machine ``reproduce`` ran on, and each sweep's wall time from its MLflow parent run (start to
    end; a sweep resumed after an interruption includes its pause)."""
    import os

    import torch

    from raysweep import tracking
    from raysweep.training.amp import cpu_name

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    lines = [f"Machine: {cpu_name()}, {os.cpu_count()} CPU cores, "
             f"{', '.join(gpus) if gpus else 'no GPU'} (where `raysweep reproduce` ran).", ""]  # fmt: skip
    times = []
    for name in sweeps:
        run = tracking.find_sweep_run(uri, name)
        if run is not None and run.info.end_time:
            times.append((name, (run.info.end_time - run.info.start_time) / 1000))
    if times:
        total = sum(s for _, s in times)
        each = ", ".join(f"`{n}` {s / 60:.1f} min" for n, s in times)
        lines += [f"Wall time of the sweeps: {total / 60:.1f} min in all ({each}).", ""]
    return lines


def _dry_run(sc: Scale, opts: list[SweepOptions], say: Callable[[str], None]) -> int:
    from raysweep.sweep import dry_run_sweep
    from raysweep.sweep.dryrun import _fmt_s

    total = 0.0
    lines = []
    for o in opts:
        res = dry_run_sweep(o)
        total += res["total_s"]
        lines.append(f"  {o.name}: {res['to_run']} of {res['trials']} trials to run, about {_fmt_s(res['total_s'])}")
    say(f"reproduce --scale {sc.name}: {len(opts)} sweeps, about {_fmt_s(total)} in all "
        "(each sweep's estimate, summed: they run one after another)")  # fmt: skip
    for line in lines:
        say(line)
    return 0


def _store_exists(uri: str) -> bool:
    from raysweep import tracking

    try:
        tracking.check_store(uri)
    except tracking.StoreError:
        return False
    return True
