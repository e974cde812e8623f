"""Is a difference real, or seed noise? The statistics behind every comparison raysweep prints.

Pure functions over plain numbers, so the sweep summary, the staged ablation, the report and the
audit all say the same thing about the same runs. A score over seeds is ``mean ± sample std (n)``
(n-1 in the denominator: a population std understates the spread of 2 or 3 seeds). Two
configurations are compared by the difference of their means with a 95% interval: Student's t over
the per-seed differences when they share seeds (the seeds pair: same init and data order), else
Welch's unpaired interval. The verdict says whether that interval excludes zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["better", "worse", "within seed noise", "one seed: cannot tell"]
VERDICTS: tuple[Verdict, ...] = ("better", "worse", "within seed noise", "one seed: cannot tell")
LEVEL = 0.95  # confidence of every interval raysweep prints
MAX_SEEDS = 1000  # beyond this, "seeds needed" is reported as not practical


@dataclass(frozen=True)
class Spread:
    """A score over seeds: mean, sample std (nan for one seed) and the number of seeds."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return fmt_spread(self)


def spread(values: Iterable[float]) -> Spread:
    """Mean, sample standard deviation (ddof=1) and count of the finite ``values``."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Spread(math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else math.nan
    return Spread(mean, std, n)


def fmt_spread(s: Spread, digits: int = 4) -> str:
    """``0.7123 ± 0.0041 (n=3)``; one seed has no spread: ``0.7123 (n=1)``."""
    if s.n == 0:
        return "no finite value (n=0)"
    if s.n == 1:
        return f"{s.mean:.{digits}f} (n=1)"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} (n={s.n})"


@dataclass(frozen=True)
class Comparison:
    """``candidate`` against ``reference``: diff = mean(candidate) - mean(reference), metric units."""

    diff: float
    low: float  # the diff's 95% interval (nan when it cannot be computed)
    high: float
    paired: bool  # True: Student t over seed-paired differences; False: Welch (unpaired)
    n: int  # pairs (paired) or the smaller group's seeds (Welch)
    verdict: Verdict
    seeds_needed: int | None  # within noise: seeds per configuration that would resolve this diff

    def __str__(self) -> str:
        return fmt_comparison(self)


@functools.lru_cache(maxsize=4096)
def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student t critical value for ``df`` degrees of freedom (cached: a report of 2,000
    configurations asks for the same few values again and again). ``scipy.special.stdtrit`` is
    ``scipy.stats.t.ppf`` without importing ``scipy.stats``: ~1 s of every report's start-up."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + level / 2))


def compare(candidate: Mapping[Any, float] | Sequence[float], reference: Mapping[Any, float] | Sequence[float],
            mode: str, level: float = LEVEL) -> Comparison:  # fmt: skip
    """Whether ``candidate`` beats ``reference`` beyond seed noise, for a metric that ``mode``
    ("max" or "min") says is better higher or lower.

    Mappings are ``seed -> score``: where they share two or more seeds the comparison is paired over
    those seeds (Student t on the differences). Otherwise (sequences, or seeds that do not pair) it
    is Welch's unpaired interval over all finite scores of each side.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    cand, ref = _finite(candidate), _finite(reference)
    shared = sorted(set(cand) & set(ref), key=str) if isinstance(candidate, Mapping) and isinstance(
        reference, Mapping) else []  # fmt: skip
    if len(shared) >= 2:
        d = spread(cand[s] - ref[s] for s in shared)
        diff = d.mean
        if d.std == 0:
            half = 0.0
        else:
            half = t_quantile(d.n - 1, level) * d.std / math.sqrt(d.n)
        return _judge(diff, half, True, d.n, mode, lambda n: t_quantile(n - 1, level) * d.std / math.sqrt(n))
    a, b = spread(cand.values()), spread(ref.values())
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Comparison(diff, math.nan, math.nan, False, min(a.n, b.n), "one seed: cannot tell", None)
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    if va + vb == 0:
        half = 0.0
    else:
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
        half = t_quantile(df, level) * math.sqrt(va + vb)

    def welch_half(n: int) -> float:  # the same spreads with n seeds on each side
        v = (a.std**2 + b.std**2) / n
        if v == 0:
            return 0.0
        df_n = v**2 / ((a.std**2 / n) ** 2 / (n - 1) + (b.std**2 / n) ** 2 / (n - 1))
        return t_quantile(df_n, level) * math.sqrt(v)

    return _judge(diff, half, False, min(a.n, b.n), mode, welch_half)


def _finite(scores: Mapping[Any, float] | Sequence[float]) -> dict[Any, float]:
    items = scores.items() if isinstance(scores, Mapping) else enumerate(scores)
    return {k: float(v) for k, v in items if v is not None and math.isfinite(float(v))}


def _judge(diff: float, half: float, paired: bool, n: int, mode: str, half_width: Any) -> Comparison:
    """The verdict on ``diff ± half``; ``half_width(n)``: the interval's half width with n seeds each."""
    low, high = diff - half, diff + half
    sign = 1 if mode == "max" else -1
    if low > 0 or high < 0:
        return Comparison(diff, low, high, paired, n, "better" if sign * diff > 0 else "worse", None)
    return Comparison(diff, low, high, paired, n, "within seed noise", _seeds_needed(diff, half_width))


def _seeds_needed(diff: float, half_width: Any) -> int | None:
    """The fewest seeds per configuration whose interval, with the spread observed, would exclude
    zero for a difference of this size (None: no difference, or more than ``MAX_SEEDS``). The half
    width shrinks as seeds grow, so a bisection finds it in a dozen quantiles, not a thousand."""
    if diff == 0 or not math.isfinite(diff) or half_width(MAX_SEEDS) >= abs(diff):
        return None
    lo, hi = 2, MAX_SEEDS  # half_width(hi) < |diff|
    while lo < hi:
        mid = (lo + hi) // 2
        if half_width(mid) < abs(diff):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fmt_comparison(c: Comparison, digits: int = 4) -> str:
    """``+0.0123 [95% CI +0.0040, +0.0206], paired over 3 seeds: better``."""
    if c.verdict == "one seed: cannot tell":
        return f"{c.diff:+.{digits}f}: one seed: cannot tell"
    how = f"paired over {c.n} seeds" if c.paired else "Welch, unpaired"
    ci = f"[{int(LEVEL * 100)}% CI {c.low:+.{digits}f}, {c.high:+.{digits}f}]"
    text = f"{c.diff:+.{digits}f} {ci}, {how}: {c.verdict}"
    if c.verdict == "within seed noise":
        text += (f" (about {c.seeds_needed} seeds each would resolve a difference this size)" if c.seeds_needed
                 else " (no practical number of seeds would resolve it)")  # fmt: skip
    return text
