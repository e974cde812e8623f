"""Pure selections over the runs DataFrame: configurations, seed groups, the best, ablation slices.

A *configuration* is a trial's params without ``seed`` (and ``device``): the runs of all seeds of
one configuration form a group, and a group's score is the mean of its runs' best ranking metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

NOT_CONFIG = {"params.seed", "params.device"}
FAILED_OUTCOMES = {"diverged", "error"}


def param(name: str) -> str:
    return f"params.{name}"


def config_columns(df: pd.DataFrame) -> list[str]:
    """The params columns that define a configuration."""
    return [c for c in df.columns if c.startswith("params.") and c not in NOT_CONFIG]


def varied(df: pd.DataFrame, exclude: Iterable[str] = ("seed", "device")) -> list[str]:
    """Names of the params that take more than one value among ``df``'s runs."""
    skip = {param(n) for n in exclude}
    return [c[len("params.") :] for c in df.columns
            if c.startswith("params.") and c not in skip and df[c].dropna().astype(str).nunique() > 1]  # fmt: skip


def config_id(row: pd.Series, cols: list[str]) -> tuple:
    return tuple((c, str(row[c])) for c in cols if c in row.index and not _missing(row[c]))


def groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """The runs of ``df`` split into configurations (seeds together), in order of first run."""
    if df.empty:
        return []
    cols = config_columns(df)
    at: dict[tuple, list[int]] = {}  # config id -> row positions: one pass, not a mask per configuration
    rows = zip(*(df[c].tolist() for c in cols), strict=True) if cols else [()] * len(df)
    for pos, vals in enumerate(rows):
        at.setdefault(tuple((c, str(v)) for c, v in zip(cols, vals, strict=True) if not _missing(v)), []).append(pos)
    return [df.iloc[p] for p in at.values()]


def failed(df: pd.DataFrame) -> pd.Series:
    """Runs that crashed or diverged: MLflow status FAILED or outcome diverged/error."""
    return (df["status"] == "FAILED") | df["outcome"].isin(FAILED_OUTCOMES)


def scored(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Runs with a finite best value of ``metric`` that did not fail."""
    col = f"best.{metric}"
    if col not in df:
        return df.iloc[0:0]
    ok = pd.to_numeric(df[col], errors="coerce").map(lambda v: math.isfinite(v) if v == v else False)
    return df[ok & ~failed(df)]


def score(group: pd.DataFrame, metric: str) -> float:
    """Mean best ``metric`` over a group's scored runs (nan if none)."""
    s = scored(group, metric)
    return float(s[f"best.{metric}"].mean()) if len(s) else math.nan


def best_group(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame | None:
    """The configuration with the best mean score (its scored runs only), None if nothing scored."""
    cands = groups(scored(df, metric))
    if not cands:
        return None
    pick = max if mode == "max" else min
    return pick(cands, key=lambda g: float(g[f"best.{metric}"].mean()))  # = score(g): g holds scored runs only


def best_run(group: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    """The single best-scoring run of a group (its artifacts stand for the group's figures)."""
    s = scored(group, metric)
    s = s if len(s) else group
    col = f"best.{metric}"
    if col not in s:
        return s.iloc[-1]
    return s.loc[s[col].idxmax() if mode == "max" else s[col].idxmin()]


def one_factor(df: pd.DataFrame, factor: str, metric: str, mode: str) -> pd.DataFrame:
    """The runs of an ablation of ``factor``: all other config params equal, ``factor`` varying.

    Among the slices that vary ``factor``, the one with most distinct values wins (ties: the one
    holding the best score). Empty if no slice has two values of ``factor``.
    """
    col = param(factor)
    if col not in df:
        return df.iloc[0:0]
    others = [c for c in config_columns(df) if c != col]
    ids = df.apply(lambda r: config_id(r, others), axis=1)
    best: tuple[int, float, pd.DataFrame] | None = None
    for i in dict.fromkeys(ids):
        part = df[ids == i]
        n = part[col].dropna().astype(str).nunique()
        s = score(part, metric) if n > 1 else math.nan
        key = (n, (s if mode == "max" else -s) if s == s else -math.inf)
        if n > 1 and (best is None or key > best[:2]):
            best = (*key, part)
    return best[2] if best else df.iloc[0:0]


def latest_staged(df: pd.DataFrame) -> pd.DataFrame:
    """The trial runs of the most recent staged sweep (runs carrying a ``stage`` tag)."""
    staged = df[df["stage"].notna()]
    if staged.empty:
        return staged
    last = staged.sort_values("start_time")["sweep_run_id"].iloc[-1]
    return staged[staged["sweep_run_id"] == last]


def ranked(df: pd.DataFrame, leaky: dict[str, tuple] | None) -> pd.Series:
    """Runs that may be ranked: none of their params takes a leaky value (``Study.leaky``)."""
    ok = pd.Series(True, index=df.index)
    for name, values in (leaky or {}).items():
        if param(name) in df:
            ok &= ~df[param(name)].astype(str).isin({str(v) for v in values})
    return ok


def run_ids(df: pd.DataFrame) -> str:
    """The ``runs`` cell of a table row: the MLflow run ids it came from."""
    return " ".join(df["run_id"])


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
