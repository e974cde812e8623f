"""What a configuration is, defined once: the driver, the summary and the report all read these rules.

- A trial's *configuration* is its study's hyperparameters without the seed. Runtime records that a
  trial run logs beside them (``device``, ``data``, ``amp``, ``amp_reason``, ``option.*``) never
  define one: two seeds whose nodes probed bf16 differently are still one configuration. Runs that
  trained a different number of ``epochs`` measured different things, so epochs keep them apart.
- Its *group* is the trials of all its seeds; its *score* is the mean ± sample std over seeds of each
  trial's best ranking metric (``stats.spread``), and seeds pair two groups (``stats.compare``).
- A *leaky* value (``Study.leaky``) makes a validation metric dishonest: such trials are shown,
  never ranked.

Plain dicts and numbers in, no pandas, torch or Ray: ``analysis.select`` applies the same rules to
the runs DataFrame row by row.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raysweep.stats import Comparison, Spread, compare, fmt_comparison, fmt_spread, spread

SEED = "seed"
RECORDS = frozenset({"device", "data", "amp", "amp_reason", "epochs"})  # logged by every trial run, not tuned
OPTION_PREFIX = "option."  # runtime options a trial run logs as params
LIKE_FOR_LIKE = ("epochs",)  # not hyperparameters, but runs that differ in them are never seeds of one group


def blank(v: Any) -> bool:
    """A missing value (None, NaN or pandas' NA) as a DataFrame row holds it."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ == "NAType"


def is_hyper(name: str, hypers: Collection[str] | None = None) -> bool:
    """Whether ``name`` is a hyperparameter that defines a configuration: one of the study's
    ``hypers`` (all logged params but runtime records when the study is unknown), never the seed."""
    if name == SEED:
        return False
    if hypers is not None:
        return name in hypers
    return name not in RECORDS and not name.startswith(OPTION_PREFIX)


def config_of(params: Mapping[str, Any], hypers: Collection[str] | None = None) -> dict[str, Any]:
    """A trial's configuration: its hyperparameters without the seed (blank values dropped)."""
    return {k: v for k, v in params.items() if is_hyper(k, hypers) and not blank(v)}


def config_id(params: Mapping[str, Any], hypers: Collection[str] | None = None) -> tuple:
    """A key equal for every seed of one configuration (values compared as text, so a value typed
    back from an MLflow param matches the driver's)."""
    keys = {**config_of(params, hypers), **{k: params[k] for k in LIKE_FOR_LIKE if k in params
                                             and not blank(params[k])}}  # fmt: skip
    return tuple(sorted((k, value_text(v)) for k, v in keys.items()))


def same_value(a: Any, b: Any) -> bool:
    """Two values of one hyperparameter are the same (``64`` and ``"64"``, ``0.001`` and ``1e-3``)."""
    return value_text(a) == value_text(b)


def value_text(v: Any) -> str:
    """A value as the text that identifies it (``64``, ``"64"`` and ``64.0`` -> ``64``)."""
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return str(v)
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def is_ranked(params: Mapping[str, Any], leaky: Mapping[str, Collection[Any]]) -> bool:
    """Whether a trial may rank or win: none of its params takes a leaky value (``Study.leaky``)."""
    return not any(str(params.get(k)) in {str(v) for v in vs} for k, vs in leaky.items())


def ranking_note(leaky: Mapping[str, Collection[Any]]) -> str:
    """Why some trials are not ranked, for summaries and reports ("" when all are)."""
    if not leaky:
        return ""
    what = ", ".join(f"{k}={'/'.join(map(str, vs))}" for k, vs in leaky.items())
    return f"trials with {what} leak validation data into training: shown, never ranked"


def seed_scores(pairs: Iterable[tuple[Any, float | None]]) -> dict[Any, float]:
    """``seed -> score`` of a group from (seed, score) pairs: non-finite scores dropped, a seed that
    ran twice (two sweeps) counted once at its mean, a run without a seed counted on its own."""
    by: dict[Any, list[float]] = {}
    for i, (seed, score) in enumerate(pairs):
        if score is None or not math.isfinite(float(score)):
            continue
        by.setdefault(("run", i) if blank(seed) else value_text(seed), []).append(float(score))
    return {k: math.fsum(v) / len(v) for k, v in by.items()}


@dataclass(frozen=True)
class Group:
    """The trials (records or DataFrame rows: ``members``) of the seeds of one configuration."""

    config: dict[str, Any]
    scores: dict[Any, float]  # seed -> best ranking metric
    members: tuple[Any, ...]
    ranked: bool = True  # False: a leaky configuration, shown but never ranked

    @property
    def spread(self) -> Spread:
        return spread(self.scores.values())


def group_by_config(items: Iterable[tuple[Mapping[str, Any], float | None, Any]],
                    hypers: Collection[str] | None = None,
                    leaky: Mapping[str, Collection[Any]] | None = None) -> list[Group]:  # fmt: skip
    """Groups of ``(params, score, member)`` items by configuration, in order of first appearance."""
    found: dict[tuple, list[tuple[Mapping[str, Any], float | None, Any]]] = {}
    for item in items:
        found.setdefault(config_id(item[0], hypers), []).append(item)
    return [Group(config_of(its[0][0], hypers), seed_scores((p.get(SEED), s) for p, s, _ in its),
                  tuple(m for _, _, m in its), is_ranked(its[0][0], leaky or {}))
            for its in found.values()]  # fmt: skip


def rank(groups: Sequence[Group], mode: str) -> list[Group]:
    """The ranked groups with a finite score, best mean first (a tie keeps the earlier group first)."""
    ok = [g for g in groups if g.ranked and g.spread.n]
    return sorted(ok, key=lambda g: -g.spread.mean if mode == "max" else g.spread.mean)


def versus(candidate: Group, reference: Group, mode: str) -> Comparison:
    """``candidate`` against ``reference``, paired over the seeds they share."""
    return compare(candidate.scores, reference.scores, mode)


@dataclass(frozen=True)
class StageDecision:
    """One stage of a staged ablation: the winner by mean, and whether it beats seed noise.

    The winner is compared with the value it replaces; a stage that keeps its current value is
    compared with the runner-up. Only ``better`` resolves the stage; it advances by the mean anyway.
    """

    factor: str
    winner: Any
    spread: Spread
    reference: Any | None  # None: no other value scored
    replaced: bool  # the reference is the value the winner replaces (else the runner-up)
    comparison: Comparison | None

    @property
    def resolved(self) -> bool:
        return self.comparison is not None and self.comparison.verdict == "better"

    def line(self) -> str:
        """``vs lr=0.001 (replaced): +0.0110 [95% CI ...], paired over 3 seeds: better; resolved``."""
        if self.comparison is None:
            return f"no other {self.factor} value scored: cannot tell; not resolved"
        role = "replaced" if self.replaced else "runner-up"
        state = "resolved" if self.resolved else "not resolved (advances by the mean)"
        return f"vs {self.factor}={self.reference} ({role}): {fmt_comparison(self.comparison)}; {state}"

    def record(self) -> dict[str, Any]:
        """The decision as plain data (stage_winners.json, the parent run)."""
        c = self.comparison
        return {"vs": self.reference, "vs_role": "replaced" if self.replaced else "runner-up",
                "diff": c.diff if c else None, "low": c.low if c else None, "high": c.high if c else None,
                "paired": c.paired if c else None, "pairs": c.n if c else 0,
                "verdict": c.verdict if c else "cannot tell", "seeds_needed": c.seeds_needed if c else None,
                "resolved": self.resolved}  # fmt: skip


def decide_stage(factor: str, candidates: Sequence[tuple[Any, Mapping[Any, float]]], current: Any, mode: str,
                 winner: Any = None) -> StageDecision | None:  # fmt: skip
    """The stage's decision over ``(value, seed -> score)`` candidates (ranked ones only), whose
    ``current`` value comes in from earlier stages. ``winner``: the value the sweep recorded (the
    report reads it back); else the best mean, a tie keeping ``current``. None if nothing scored."""
    scored = [(v, dict(s)) for v, s in candidates if spread(s.values()).n]
    if not scored:
        return None

    def key(vs: tuple[Any, dict]) -> float:
        m = spread(vs[1].values()).mean
        return m if mode == "max" else -m

    if winner is None:
        top = max(key(c) for c in scored)
        tied = [c for c in scored if key(c) == top]
        win = next((c for c in tied if same_value(c[0], current)), tied[0])
    else:
        win = next((c for c in scored if same_value(c[0], winner)), None) or max(scored, key=key)
    rest = [c for c in scored if not same_value(c[0], win[0])]
    old = next((c for c in rest if same_value(c[0], current)), None)
    ref = old or (max(rest, key=key) if rest else None)
    comparison = compare(win[1], ref[1], mode) if ref else None
    return StageDecision(factor, win[0], spread(win[1].values()), ref[0] if ref else None, old is not None,
                         comparison)  # fmt: skip


def fmt_score(values: Iterable[float], digits: int = 4) -> str:
    """A number over seeds: the value itself for one seed, else ``mean ± std (n=k)``."""
    s = spread(values)
    return f"{s.mean:.{digits}f}" if s.n == 1 else fmt_spread(s, digits)

