"""Planning: the user's options -> a validated plan, and the staged ablation's choice of trials.

Everything a user can get wrong is checked in ``plan_sweep`` before data, MLflow or Ray are touched,
so a bad flag costs one error line and nothing else. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from raysweep.configuration import config_id, decide_stage, same_value, seed_scores
from raysweep.search_spaces import Space, SpaceError, is_space_file, load_space_file, validate, with_overrides
from raysweep.stats import Spread, fmt_spread, spread
from raysweep.studies import Study, TrialResources, get_study

if TYPE_CHECKING:
    from raysweep.context import TrialContext

SEARCHES = ("grid", "random", "optuna", "qmc")  # each has a builder in tuner.SEARCH_ALGS
SCHEDULERS = ("fifo", "asha")  # each has a builder in tuner.SCHEDULERS


@dataclass
class SweepOptions:
    """A sweep as the user asked for it (the CLI's flags, one to one)."""

    study: str
    space: str | None = None  # a built-in space's name, or a space file (.yaml/.yml/.json/.toml)
    data: str | None = None
    experiment: str | None = None
    tracking_uri: str | None = None
    storage_path: str | None = None
    search: str = "grid"
    scheduler: str = "fifo"
    num_samples: int = 1  # configurations drawn by random/optuna/qmc, each trained with every seed (grid: 1)
    max_concurrent: int = 0  # 0: as many as resources allow
    cpus_per_trial: float | None = None  # None: the CPUs no other trial can use (sweep.with_auto_cpus)
    gpus_per_trial: float = 0.0
    epochs: int | None = None  # None: the space's default
    seed: int = 0
    repeats: int = 1  # seeds per configuration (seed, seed+1, ...)
    patience: int = 5
    max_failures: int = 2  # retries of a trial whose worker dies, from its last checkpoint
    overrides: dict[str, str] = field(default_factory=dict)  # --set name=v1,v2
    options: dict[str, Any] = field(default_factory=dict)  # study runtime options
    address: str | None = None  # Ray cluster address; None starts Ray in-process
    name: str | None = None  # sweep name (unique per run; default study-space-time)
    device: str = "auto"
    amp: str = "auto"  # bf16 autocast: "auto" (on CUDA), "bf16" (also CPUs with AMX: ~2x), "off"
    quiet: bool = False  # progress lines off: only the summary
    configs: list[dict[str, Any]] = field(default_factory=list)  # exactly these configurations (raysweep audit)


@dataclass
class SweepPlan:
    """A validated sweep: what will run."""

    opts: SweepOptions
    study: Study
    space: Space
    epochs: int
    name: str
    resources: TrialResources  # what each trial asks for (its own placement + the workers it starts)

    def trial_context(self, data: str, **runtime: Any) -> TrialContext:
        """What each trial of this plan is handed, built in one place so that the sweep, ``--dry-run``
        and the benchmarks train alike. ``runtime``: tracking, resume points, identity."""
        from raysweep.context import TrialContext

        study, opts = self.study, self.opts
        return TrialContext(study=study.name, data=data, epochs=self.epochs, metric=study.metric, mode=study.mode,
                            stop_metric=study.stop_metric, stop_mode=study.stop_mode, patience=opts.patience,
                            device=opts.device, amp=opts.amp, options={**opts.options, **self.resources.options},
                            **runtime)  # fmt: skip


def plan_sweep(opts: SweepOptions) -> SweepPlan:
    """Check everything before Ray starts; SpaceError with one line saying what is wrong."""
    study = get_study(opts.study)
    if opts.space and is_space_file(opts.space):
        space = load_space_file(opts.space, study.hypers, study.name)
    else:
        space = study.space(opts.space or study.default_space)
    space = with_overrides(space, study.hypers, opts.overrides)
    if opts.configs:  # an explicit list: a grid of exactly these (sweep.audit), each with every seed
        from raysweep.sweep.audit import listed_space

        space = listed_space(space, study.hypers, opts.configs)
    if opts.repeats > 1 or opts.seed:
        seeds = tuple(range(opts.seed, opts.seed + opts.repeats))
        space = with_overrides(space, study.hypers, {"seed": ",".join(map(str, seeds))})
        if opts.repeats > 1:  # seeds are a nuisance dimension, never a stage
            space = replace(space, dims=tuple(replace(d, role="nuisance") if d.name == "seed" else d
                                              for d in space.dims))  # fmt: skip
    validate(space, study.hypers)
    if opts.search not in SEARCHES:
        raise SpaceError(f"unknown search {opts.search!r}; choose one of {', '.join(SEARCHES)}")
    if opts.scheduler not in SCHEDULERS:
        raise SpaceError(f"unknown scheduler {opts.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if space.stages and opts.search != "grid":
        raise SpaceError(f"space {space.name!r} is a staged ablation; it runs with --search grid only")
    if space.combinations and opts.search != "grid":
        raise SpaceError(f"space {space.name!r} lists fixed combinations of values; it runs with --search grid only")
    if space.sampled() and opts.search == "grid":
        d = space.sampled()[0]
        raise SpaceError(f"space {space.name!r} draws {d.name} ~ {d.dist}; grid search runs listed values only: "
                         f"use --search random, qmc or optuna (or list values: --set {d.name}=V1,V2)")  # fmt: skip
    if opts.scheduler == "asha" and len(seeds_of(space)) > 1:
        raise SpaceError(f"--scheduler asha with {len(seeds_of(space))} seeds per configuration: ASHA would stop "
                         "each seed's trial on its own, so a configuration could keep some seeds and lose others "
                         "and its mean would compare unlike trials; use --scheduler fifo with --repeats, "
                         "or --repeats 1 with ASHA")  # fmt: skip
    epochs = opts.epochs if opts.epochs is not None else space.epochs
    checks = [
        (epochs >= 1, f"--epochs must be >= 1, got {epochs}"),
        (opts.num_samples >= 1, f"--num-samples must be >= 1, got {opts.num_samples}"),
        (opts.repeats >= 1, f"--repeats must be >= 1, got {opts.repeats}"),
        (opts.cpus_per_trial is None or opts.cpus_per_trial > 0,
         f"--cpus-per-trial must be > 0, got {opts.cpus_per_trial}"),
        (opts.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0, got {opts.gpus_per_trial}"),
        (opts.max_concurrent >= 0, f"--max-concurrent must be >= 0, got {opts.max_concurrent}"),
        (opts.patience >= 1, f"--patience must be >= 1, got {opts.patience}"),
        (opts.max_failures >= 0, f"--max-failures must be >= 0, got {opts.max_failures}"),
        (opts.amp in ("auto", "bf16", "off"), f"--amp must be auto, bf16 or off, got {opts.amp!r}"),
        (str(opts.options.get("figures", "auto")) in ("auto", "0", "1"),
         f"--option figures takes auto, 1 (always) or 0 (never), got {opts.options.get('figures')!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise SpaceError(msg)
    if opts.gpus_per_trial > 1 and opts.gpus_per_trial != int(opts.gpus_per_trial):
        raise SpaceError("--gpus-per-trial above 1 must be a whole number")
    if opts.search == "grid" and opts.num_samples > 1:  # no two trials may train one config with one seed
        raise SpaceError(f"--num-samples {opts.num_samples} with --search grid would train every grid point "
                         f"{opts.num_samples} times with the same seed; use --repeats {opts.num_samples} "
                         "(seeds --seed, --seed+1, ...) to repeat configurations")  # fmt: skip
    name = opts.name or f"{study.name}-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    resources = study.resources(replace(opts, cpus_per_trial=opts.cpus_per_trial or 1.0))  # auto: 1 until Ray is up
    return SweepPlan(opts, study, space, epochs, name, resources)


def seeds_of(space: Space) -> tuple[Any, ...]:
    """The seeds every configuration trains with (``--seed``, ``--seed+1``, ...: the seed dimension's
    values), paired across configurations; ``(None,)`` for a study that takes no seed."""
    return tuple(space.dim("seed").values) if "seed" in {d.name for d in space.dims} else (None,)


@dataclass
class Draws:
    """What a sampling search (random, qmc, optuna) runs this time: ``num_samples`` configurations,
    each trained with every seed of ``seeds`` (one trial and one MLflow run per seed).

    A resumed sweep counts the configurations it already has: one with every seed finished is
    done (its mean score goes to the searcher, ``known``); one with some seeds finished or a
    checkpoint left runs first (``first``), only its missing seeds; the sampler proposes the rest.
    """

    seeds: tuple[Any, ...]
    first: list[dict[str, Any]]  # configurations (without seed) to complete first
    new: int  # configurations the sampler still proposes
    trials: int  # Tune trials in all: the missing seeds of ``first`` plus ``new`` x seeds
    known: dict[tuple, dict[Any, float | None]]  # config_id -> {seed: score} finished before
    configs: dict[tuple, dict[str, Any]]  # config_id -> the configuration (without seed) of ``known``
    size: int | None  # configurations the space holds (None: infinite)
    note: str = ""  # set when --num-samples is more than a finite space holds

    def complete(self) -> list[tuple]:
        """Configurations with every seed finished."""
        return [c for c, s in self.known.items() if all(x in s for x in self.seeds)]


def draws(plan: SweepPlan, done: list[dict[str, Any]] = (), unfinished: list[dict[str, Any]] = ()) -> Draws:
    """The configurations and trials a sampling search runs, given the trial records an earlier
    attempt finished (``done``) and the configs it left with a checkpoint (``unfinished``)."""
    space, opts = plan.space, plan.opts
    seeds = seeds_of(space)
    known: dict[tuple, dict[Any, float | None]] = {}
    configs: dict[tuple, dict[str, Any]] = {}
    for t in done:
        cid = config_id(t["config"])
        known.setdefault(cid, {})[t["config"].get("seed")] = t["score"]
        configs[cid] = {k: v for k, v in t["config"].items() if k != "seed"}
    d = Draws(seeds, [], 0, 0, known, configs, space.size(exclude=("seed",)))
    complete = set(d.complete())
    first: dict[tuple, dict[str, Any]] = {}
    for c in [configs[cid] for cid in known if cid not in complete] + list(unfinished):
        if config_id(c) not in complete:
            first.setdefault(config_id(c), {k: v for k, v in c.items() if k != "seed"})
    want = opts.num_samples
    if d.size is not None and want > d.size:
        d.note = (f"--num-samples {want} is more than the {d.size} configuration{'s' * (d.size != 1)} of space "
                  f"{space.name!r}: each runs once")  # fmt: skip
        want = d.size
    d.first = list(first.values())
    d.new = max(0, want - len(complete) - len(d.first))
    missing = sum(1 for cid in first for s in seeds if s not in known.get(cid, {}))
    d.trials = missing + d.new * len(seeds)
    return d


def trial_identity(plan: SweepPlan) -> dict[str, Any]:
    """What changes a trial's result besides its config and data (part of its key, so a resumed or
    extended sweep never skips a trial it did not run): epochs, early-stopping patience, and the
    study's result-relevant runtime options (``Study.result_options``) when given."""
    opts = plan.opts
    chosen = {k: opts.options[k] for k in plan.study.result_options if k in opts.options}
    return {"epochs": plan.epochs, "patience": opts.patience, **({"options": chosen} if chosen else {})}


RunStage = Callable[[int, str, list[dict[str, Any]]], list[dict[str, Any]]]
"""Runs stage ``i`` (labelled by its factor) on the given configurations; returns their trial records."""


def staged_ablation(space: Space, metric: str, mode: str, trials: list[dict[str, Any]], run_stage: RunStage,
                    say: Callable[..., None],
                    ranked: Callable[[dict[str, Any]], bool] = lambda c: True) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The staged one-factor-at-a-time ablation: each stage fixes the winners of those before it.

    ``trials`` are the records known before this run (a resume's finished trials). A candidate is
    done when every one of its seeds has a finished trial (run in an earlier stage, or before a
    resume): only its missing seeds run, and its result competes in the new stage too. A winner
    goes by the mean score over its seeds (a leaky configuration, ``ranked`` false, never wins; a tie
    keeps the current value), and is compared, seed-paired, with the value it replaces (or the
    runner-up): within seed noise the stage says "not resolved" (``configuration.decide_stage``).
    Yields each stage's winner (stage, param, value, mean, sample std and n over seeds, run keys,
    the comparison) as soon as it is known, so an interrupted ablation still records its stages.
    """
    seen = list(trials)
    current = {**{d.name: d.values[0] for d in space.dims}, **space.baseline}
    seeds = list(space.dim("seed").values) if "seed" in current else [None]
    for i, factor in enumerate((None, *space.stages)):
        values = list(space.dim(factor).values) if factor else [None]
        candidates = [{**current, factor: v} if factor else dict(current) for v in values]
        ran = {(config_id(t["config"]), str(t["config"].get("seed"))) for t in seen if t["status"] != "RUNNING"}
        todo = [{**c, "seed": s} if s is not None else c for c in candidates for s in seeds
                if (config_id(c), str(s if s is not None else c.get("seed"))) not in ran]  # fmt: skip
        label = factor or "baseline"
        if todo:
            say(f"stage {i}: {label} {values if factor else ''} (with {fmt_config(current, {factor, 'seed'})})")
            seen.extend(run_stage(i, label, todo))
        if factor is None:
            base = [(t["config"].get("seed"), t["score"]) for t in seen if config_id(t["config"]) == config_id(current)]
            say(f"stage {i} baseline: {metric} {fmt_spread(spread_of(base))}")
            continue
        cands = []
        for c in candidates:
            group = [t for t in seen if config_id(t["config"]) == config_id(c)]
            if ranked(c):
                cands.append((c[factor], seed_scores((t["config"].get("seed"), t["score"]) for t in group), group))
        decision = decide_stage(factor, [(v, s) for v, s, _ in cands], current[factor], mode)
        if decision is None:
            raise RuntimeError(f"stage {i}: no trial of {factor} in {values} produced {metric}")
        group = next(g for v, _, g in cands if same_value(v, decision.winner))
        current[factor] = decision.winner
        sp = decision.spread
        yield {"stage": i, "param": factor, "value": decision.winner, "score": sp.mean, "std": sp.std, "n": sp.n,
               "run_keys": [t["key"] for t in group], **decision.record()}  # fmt: skip
        say(f"stage {i} winner: {factor}={decision.winner} ({metric} {fmt_spread(sp)})")
        say(f"  {decision.line()}")


def spread_of(pairs: list[tuple[Any, float | None]]) -> Spread:
    """Mean ± sample std over the seeds of (seed, score) pairs (``configuration.seed_scores``)."""
    return spread(seed_scores(pairs).values())


def mean_std(mean: float, std: float, n: int) -> str:
    """``0.7123 ± 0.0041 (n=3)``: how a score over seeds is printed (``stats.fmt_spread``; sample std)."""
    return fmt_spread(Spread(mean, std, n))


def fmt_config(config: dict[str, Any], exclude: Any = frozenset()) -> str:
    """``k=v k=v`` for a printed line."""
    return " ".join(f"{k}={v}" for k, v in config.items() if k not in exclude)
