"""``raysweep sweep ... --dry-run``: what a sweep would cost, before it costs anything.

Nothing trains to the end and no MLflow run is written. For each distinct model shape of the
planned trials (a configuration without its seed) the study's own Task is built on this node with
the real data, and a few of its real training steps and one validation pass are timed; an epoch is
then ``steps_per_epoch`` such steps plus the validation pass. Peak memory is this process's
resident peak while a shape is built and timed; checkpoint disk is the size of one checkpoint (last
state and best weights), of which a trial keeps one.

The error bar is stated, not hidden: a few steps time the compute (±30% when the node is quiet),
but data loading at full scale and other trials sharing the cores are not measured, and the
start-up of the sweep and of each trial and the per-epoch reporting are assumed constants below.
"""

from __future__ import annotations

import io
import json
import math
import resource
import time
from dataclasses import dataclass, replace
from typing import Any

from raysweep.search_spaces import configs_of, draw_configs
from raysweep.sweep.plan import SweepPlan, config_id, draws, fmt_config, seeds_of
from raysweep.text import plural

START_S = 5.0  # seconds to start a trial (worker process, imports, MLflow run), from STACK_NOTES
REPORT_S = 0.3  # seconds per epoch to report to Tune and log to MLflow (assumed), besides the timed checkpoint
FINISH_S = 1.0  # seconds at a trial's end for its artifacts (assumed), besides a timed test pass
SWEEP_START_S = 3.0  # seconds to open the sweep's parent run and start its Tuner (assumed)
TIMED_STEPS = 3  # timed training steps per shape, after one warm-up step


@dataclass
class ShapeCost:
    """The measured cost of one model shape."""

    config: dict[str, Any]
    step_s: float
    steps_per_epoch: int
    eval_s: float
    peak_mb: float
    checkpoint_mb: float
    checkpoint_s: float = 0.0  # writing one checkpoint (timed)

    @property
    def epoch_s(self) -> float:
        """Training, validation, checkpoint and reporting of one epoch."""
        return self.step_s * self.steps_per_epoch + self.eval_s + self.checkpoint_s + REPORT_S

    def trial_s(self, epochs: int) -> float:
        """Start-up, every epoch, then the final test pass (timed like validation) and artifacts."""
        return START_S + epochs * self.epoch_s + self.eval_s + FINISH_S


@dataclass(frozen=True)
class Estimate:
    """What the trials to run cost in all, from their measured shapes (no clock read here)."""

    trial_s: list[float]  # seconds per trial to run, in order
    concurrent: int  # trials that run at once: the cluster's limit, or fewer when fewer are left
    waves: int  # rounds of ``at_once`` trials
    total_s: float  # seconds of wall time: sweep start-up + the trials' seconds shared over ``concurrent``
    disk_mb: float  # MB of checkpoints (one per trial)
    peak_mb: float  # MB of the largest shape's resident peak


def estimate(costs: list[ShapeCost], epochs: int, at_once: int) -> Estimate:
    """The sweep's cost from one measured ``ShapeCost`` per trial to run, ``epochs`` each, ``at_once``
    at a time. A pure function of the measurements, so its arithmetic is tested without a clock."""
    if not costs:
        return Estimate([], 0, 0, 0.0, 0.0, 0.0)
    trial_s = [c.trial_s(epochs) for c in costs]
    concurrent = max(1, min(at_once, len(costs)))
    return Estimate(trial_s=trial_s, concurrent=concurrent, waves=math.ceil(len(costs) / max(1, at_once)),
                    total_s=SWEEP_START_S + sum(trial_s) / concurrent, disk_mb=sum(c.checkpoint_mb for c in costs),
                    peak_mb=max(c.peak_mb for c in costs))  # fmt: skip


def planned_configs(plan: SweepPlan) -> tuple[list[dict[str, Any]], str]:
    """The configurations the sweep would train, and a note on how they were chosen."""
    space, opts = plan.space, plan.opts
    if space.stages:  # stage candidates around the baseline: later winners are not known yet
        current = {**{d.name: d.values[0] for d in space.dims}, **space.baseline}
        seeds = list(space.dim("seed").values) if "seed" in current else [current.get("seed")]
        out = [{**current, "seed": s} for s in seeds]
        for factor in space.stages:
            out += [{**current, factor: v, "seed": s} for v in space.dim(factor).values[1:] for s in seeds]
        return out, "staged: later stages shown around the baseline (their winners are not known yet)"
    if opts.search == "grid":
        return configs_of(space), "grid"
    # random/optuna/qmc: timed on seeded draws of the space (the searcher draws its own), the first two
    # at every distribution's low and high bound so that the data checks see the extremes
    d = draws(plan)
    n = d.new
    drawn = draw_configs(space, n, seed=opts.seed)
    for i, bound in enumerate(("low", "high")[:n]):
        drawn[i].update({x.name: getattr(x.dist, bound) for x in space.sampled()})
    configs = [{**c, "seed": s} if s is not None else c for c in drawn for s in d.seeds]
    return configs, f"{opts.search} search; timed on {n} seeded draws"


def what_runs(plan: SweepPlan) -> list[str]:
    """What the sweep will run, as the searcher will run it: a sampling search's distributions as
    distributions, a staged ablation's stages, a grid's size; then the fixed values."""
    space, opts = plan.space, plan.opts
    seeds = seeds_of(space)
    with_seeds = "" if seeds == (None,) else f", each with seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"
    varied = [x.shown() for x in space.dims if x.varies() and x.name != "seed"]
    lines = []
    if space.stages:
        base = {**{x.name: x.values[0] for x in space.dims}, **space.baseline}
        shown = {k: v for k, v in base.items() if k != "seed" and space.dim(k).varies()}
        lines.append(f"stage 0: the baseline {fmt_config(shown)}{with_seeds}")
        for i, factor in enumerate(space.stages, 1):
            lines.append(f"stage {i}: {space.dim(factor).shown()}, the winners of the stages before it fixed")
    elif opts.search == "grid":
        n = space.size(exclude=("seed",))
        lines.append(f"{n} grid point{'s' * (n != 1)} of {', '.join(varied) or 'one configuration'}{with_seeds}")
    else:
        d = draws(plan)
        lines.append(f"{d.new} sample{'s' * (d.new != 1)} ({opts.search}) of {', '.join(varied) or 'nothing'}"
                     f"{with_seeds}: {d.trials} trial{'s' * (d.trials != 1)}")  # fmt: skip
        if d.note:
            lines.append(d.note)
    fixed = {x.name: x.values[0] for x in space.dims if not x.varies() and x.name != "seed"}
    if fixed:
        lines.append(f"fixed: {fmt_config(fixed)}")
    return lines


def measure_shape(plan: SweepPlan, config: dict[str, Any], data: str,
                  seen: dict[str, ShapeCost] | None = None) -> ShapeCost:  # fmt: skip
    """Build the study's Task for ``config`` and time a few real training steps and one validation.

    ``seen``: costs by model shape (the task's model spec, batch size and steps per epoch): a
    configuration that differs only in, say, its learning rate reuses its shape's timing."""
    import torch

    from raysweep.study import resolve
    from raysweep.training import pick_device, seed_everything
    from raysweep.training.amp import resolve_amp

    study, opts = plan.study, plan.opts
    if not study.task_path:
        raise ValueError(f"study {study.name!r} names no task_path: --dry-run cannot time it")
    torch.set_num_threads(max(1, int(plan.resources.trial["cpu"])))
    ctx = plan.trial_context(data)
    seed_everything(int(config.get("seed", 0)))
    device = pick_device(opts.device)
    task = resolve(study.task_path)(config, ctx, device)
    amp, _ = resolve_amp(ctx.amp, device, task.model, int(config.get("batch_size", 32)), task.model_spec())
    task.ctx = replace(ctx, amp=amp)
    real_steps = int(task.steps_per_epoch)
    shape = json.dumps([task.model_spec(), config.get("batch_size"), real_steps, amp], sort_keys=True, default=str)
    if seen is not None and shape in seen:
        return replace(seen[shape], config=config)
    task.steps_per_epoch = 1
    task.train_epoch(0)  # warm-up: first-call allocations, kernel choice
    task.steps_per_epoch = min(TIMED_STEPS, real_steps)
    t0 = time.perf_counter()
    task.train_epoch(1)
    step_s = (time.perf_counter() - t0) / task.steps_per_epoch
    t0 = time.perf_counter()
    task.evaluate()
    eval_s = time.perf_counter() - t0
    buf = io.BytesIO()
    t0 = time.perf_counter()
    torch.save({"task": task.state_dict(), "best": task.model.state_dict()}, buf)
    checkpoint_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cost = ShapeCost(config, step_s, real_steps, eval_s, peak_mb, len(buf.getvalue()) / 2**20, checkpoint_s)
    if seen is not None:
        seen[shape] = cost
    return cost


def dry_run(plan: SweepPlan, at_once: int, finished: set[str], key_of: Any, data: str,
            say: Any = print) -> dict[str, Any]:  # fmt: skip
    """Print the plan, its resources and its measured cost; returns the figures (for tests)."""
    configs, how = planned_configs(plan)
    todo = [c for c in configs if key_of(c) not in finished]
    varied = plan.space.varied()
    say(f"dry run of sweep {plan.name}: study {plan.study.name}, space {plan.space.name}, "
        f"{plural(plan.epochs, 'epoch')} per trial, {plural(len(configs), 'trial')} ({how}); nothing is trained "
        "to the end, no MLflow run is written")  # fmt: skip
    for line in what_runs(plan):
        say(f"  {line}")
    for i, c in enumerate(configs if plan.opts.search == "grid" else (), 1):  # a sampler's draws are its own
        state = "finished (not run again)" if key_of(c) not in {key_of(t) for t in todo} else "to run"
        say(f"  {i:>3}. {fmt_config({k: c[k] for k in varied if k in c}) or fmt_config(c)}  [{state}]")
    res = plan.resources
    say(f"resources: each trial {res.summary or res.trial}; {at_once} trial(s) at once on this cluster")
    shapes: dict[tuple, ShapeCost] = {}  # by configuration (seeds together)
    timed: dict[str, ShapeCost] = {}  # by model shape
    for c in todo:
        cid = config_id(c)
        if cid not in shapes:
            n = len(timed)
            shapes[cid] = s = measure_shape(plan, c, data, timed)
            if len(timed) > n:  # a new shape was timed
                say(f"  timed {fmt_config({k: c[k] for k in varied if k in c and k != 'seed'}) or 'the model'}: "
                    f"{s.step_s * 1000:.1f} ms/step x {s.steps_per_epoch} steps + {s.eval_s:.1f} s validation "
                    f"= {s.epoch_s:.1f} s/epoch; peak memory {s.peak_mb:.0f} MB; "
                    f"checkpoint {s.checkpoint_mb:.1f} MB")  # fmt: skip
    est = estimate([shapes[config_id(c)] for c in todo], plan.epochs, at_once)
    trial_s, waves, total_s, disk, peak = est.trial_s, est.waves, est.total_s, est.disk_mb, est.peak_mb
    per = f"{min(trial_s):.0f}-{max(trial_s):.0f} s" if trial_s else "-"
    say(f"estimate: {len(todo)} trial(s) to run, {per} each, in {waves} wave(s) of {at_once}: "
        f"about {_fmt_s(total_s)} in all (-30%/+50%: compute timed over {TIMED_STEPS} steps per shape; data "
        f"loading at scale and core sharing not measured; start-up ~{START_S:.0f} s per trial and "
        "reporting assumed)")  # fmt: skip
    say(f"memory: peak {peak:.0f} MB per trial (this process while timing); disk: {disk:.1f} MB of checkpoints "
        "(one per trial)")  # fmt: skip
    return {"trials": len(configs), "to_run": len(todo), "total_s": total_s, "trial_s": trial_s,
            "waves": waves, "concurrent": est.concurrent, "peak_mb": peak, "disk_mb": disk}  # fmt: skip


def _fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
