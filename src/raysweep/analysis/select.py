"""Pure selections over the runs DataFrame: configurations, seed groups, the best, ablation slices.

What a configuration, its group, its score and the leaky rule are is ``raysweep.configuration``
(the driver reads the same): a trial's hyperparameters without its seed, never runtime records
(``amp_reason``, ``device``, ``data``); a group's score is mean ± sample std over its seeds of each
run's best ranking metric. A dimension's role (scientific / nuisance / fixed) is the one its
sweep's space recorded (the parent run's ``roles`` param); older sweeps: what varies is scientific.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from raysweep import configuration
from raysweep.stats import Comparison, compare, spread

FAILED_OUTCOMES = {"diverged", "error"}
ROLES = "roles"  # column: the JSON {name: role} of the run's sweep (``attach_roles``)


def param(name: str) -> str:
    return f"params.{name}"


def hyper_names(df: pd.DataFrame) -> set[str] | None:
    """The hyperparameters of ``df``'s studies (their ``HYPERS``); None when a study is not registered
    (then every logged param but the runtime records counts, ``configuration.is_hyper``)."""
    from raysweep.studies import STUDIES

    studies = set(df["study"].dropna()) if "study" in df else set()
    if not studies or not studies <= set(STUDIES):
        return None
    return {n for s in studies for n in STUDIES[s].hypers}


def config_columns(df: pd.DataFrame) -> list[str]:
    """The params columns that define a configuration (``configuration.config_id``)."""
    hypers, keep = hyper_names(df), set(configuration.LIKE_FOR_LIKE)
    names = [c[len("params.") :] for c in df.columns if c.startswith("params.")]
    return [param(n) for n in names if configuration.is_hyper(n, hypers) or n in keep]


def varied(df: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """Names of the hyperparameters (never the seed or a runtime record) that take more than one
    value among ``df``'s runs."""
    hypers, skip = hyper_names(df), set(exclude)
    return [c[len("params.") :] for c in df.columns
            if c.startswith("params.") and configuration.is_hyper(c[len("params.") :], hypers)
            and c[len("params.") :] not in skip and _values(df[c]) > 1]  # fmt: skip


def _values(col: pd.Series) -> int:
    return col.dropna().map(configuration.value_text).nunique()


def params_of(row: pd.Series) -> dict[str, object]:
    """A run's params as the driver's plain dict (``{"lr": 0.01, ...}``), blanks dropped."""
    return {c[len("params.") :]: v for c, v in row.items()
            if isinstance(c, str) and c.startswith("params.") and not configuration.blank(v)}  # fmt: skip


def config_ids(df: pd.DataFrame, cols: list[str] | None = None) -> pd.Series:
    """``configuration.config_id`` of each run (over ``cols`` only, when given)."""
    cols = sorted((c for c in (config_columns(df) if cols is None else cols) if c in df.columns),
                  key=lambda c: c[len("params.") :])  # fmt: skip
    # cols are configuration columns already: config_id would only drop blanks, sort by name and type
    # values as text; done here column by column over plain lists, each distinct value typed once (at
    # 10,000 runs a config_id per row costs seconds, df.apply more)
    texts = [_texts(df[c].tolist()) for c in cols]
    names = [c[len("params.") :] for c in cols]
    rows = zip(*texts, strict=True) if cols else [()] * len(df)
    ids = [tuple((n, t) for n, t in zip(names, row, strict=True) if t is not None) for row in rows]
    return pd.Series(ids, index=df.index, dtype=object)


def _texts(values: list[object]) -> list[str | None]:
    """``configuration.value_text`` of each value (None for a blank), each distinct value typed once."""
    memo: dict[tuple[type, object], str] = {}
    out: list[str | None] = []
    for v in values:
        if configuration.blank(v):
            out.append(None)
            continue
        key = (type(v), v)
        if key not in memo:
            memo[key] = configuration.value_text(v)
        out.append(memo[key])
    return out


def matching(ids: pd.Series, key: tuple) -> pd.Series:
    """Which of ``ids`` equal ``key`` (``ids == key`` would compare a tuple element by element)."""
    return ids.map(lambda i: i == key).astype(bool)


def groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """The runs of ``df`` split into configurations (seeds together), in order of first run."""
    if df.empty:
        return []
    at: dict[tuple, list[int]] = {}  # config id -> row positions: one pass, not a mask per configuration
    for pos, i in enumerate(config_ids(df)):
        at.setdefault(i, []).append(pos)
    # one reordering, then a slice per group: a take per group costs ~2 ms at 2,000 groups
    ordered = df.take([p for ps in at.values() for p in ps])
    ends = list(itertools.accumulate(len(ps) for ps in at.values()))
    return [ordered.iloc[e - len(ps) : e] for e, ps in zip(ends, at.values(), strict=True)]


def failed(df: pd.DataFrame) -> pd.Series:
    """Runs that crashed or diverged: MLflow status FAILED or outcome diverged/error."""
    # plain lists: pandas' string comparisons cost ~1 ms a call, and a report of 2,000 configurations
    # asks this of every group several times
    bad = [s == "FAILED" or o in FAILED_OUTCOMES for s, o in zip(df["status"].tolist(), df["outcome"].tolist(),
                                                                   strict=True)]  # fmt: skip
    return pd.Series(bad, index=df.index, dtype=bool)


def scored(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Runs with a finite best value of ``metric`` that did not fail (row by row: ``scored`` of a
    group is the group's share of ``scored`` of all runs)."""
    col = f"best.{metric}"
    if col not in df:
        return df.iloc[0:0]
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return df[np.isfinite(values) & ~failed(df).to_numpy()]


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
    ids = config_ids(df, others)
    best: tuple[int, float, pd.DataFrame] | None = None
    for i in dict.fromkeys(ids):
        part = df[matching(ids, i)]
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
    """Runs that may be ranked: none of their params takes a leaky value (``configuration.is_ranked``)."""
    cols = [n for n in (leaky or {}) if param(n) in df]  # a run without the param cannot take a leaky value
    if df.empty or not cols:
        return pd.Series(True, index=df.index, dtype=bool)
    rows = zip(*(df[param(n)].tolist() for n in cols), strict=True)  # only the leaky params, as plain lists
    ok = [configuration.is_ranked({n: v for n, v in zip(cols, vals, strict=True) if not configuration.blank(v)},
                                  leaky or {}) for vals in rows]  # fmt: skip
    return pd.Series(ok, index=df.index, dtype=bool)


def seed_scores(group: pd.DataFrame, metric: str, col: str | None = None) -> dict[object, float]:
    """``seed -> score`` of a group's scored runs (``col``: another column than ``best.<metric>``)."""
    s = scored(group, metric)
    col = col or f"best.{metric}"
    if col not in s:
        return {}
    seeds = s[param(configuration.SEED)] if param(configuration.SEED) in s else pd.Series(None, index=s.index)
    return configuration.seed_scores(zip(seeds, pd.to_numeric(s[col], errors="coerce"), strict=True))


def versus(candidate: pd.DataFrame, reference: pd.DataFrame, metric: str, mode: str,
           col: str | None = None) -> Comparison:  # fmt: skip
    """``candidate`` against ``reference`` (``stats.compare``, seed-paired where seeds are shared)."""
    return compare(seed_scores(candidate, metric, col), seed_scores(reference, metric, col), mode)


def verdict_text(c: Comparison) -> str:
    """A comparison's verdict for a table cell; within noise, the seeds that would resolve it."""
    if c.verdict != "within seed noise":
        return c.verdict
    return c.verdict + (f" (about {c.seeds_needed} seeds would resolve it)" if c.seeds_needed else "")


def against_best(gs: list[pd.DataFrame], metric: str, mode: str,
                 leaky: dict[str, tuple] | None = None) -> list[tuple[Comparison | None, str]]:  # fmt: skip
    """For each group of a ranked table: (its difference to the best group, its verdict).

    The best group (best mean) gets no difference and says whether it beats the runner-up;
    a tie or a difference within seed noise is never called a win. Leaky groups are not ranked.
    """
    clean = [bool(ranked(g, leaky).all()) for g in gs]
    scores = [seed_scores(g, metric) if c else {} for g, c in zip(gs, clean, strict=True)]  # once per group
    means = [spread(s.values()).mean if s else math.nan for s in scores]
    order = sorted((i for i, s in enumerate(scores) if s), key=lambda i: -means[i] if mode == "max" else means[i])
    out: list[tuple[Comparison | None, str]] = []
    for i in range(len(gs)):
        if not clean[i]:
            out.append((None, "not ranked (leaky)"))
        elif not scores[i]:
            out.append((None, ""))
        elif i == order[0]:
            if len(order) < 2:
                out.append((None, "best (the only one ranked)"))
                continue
            c = compare(scores[i], scores[order[1]], mode)
            out.append((None, "best: better than the runner-up" if c.verdict == "better"
                        else f"best mean, not resolved: vs the runner-up {verdict_text(c)}"))  # fmt: skip
        else:
            c = compare(scores[i], scores[order[0]], mode)
            out.append((c, verdict_text(c)))
    return out


def attach_roles(runs: pd.DataFrame, sweeps: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``roles`` column: the role of each dimension that the run's sweep recorded
    (param ``roles`` of its parent run, JSON), blank for sweeps from before roles were recorded."""
    col = param(ROLES)
    ok = sweeps is not None and col in sweeps and "run_id" in sweeps
    known = dict(zip(sweeps["run_id"], sweeps[col], strict=True)) if ok else {}
    if "sweep_run_id" not in runs:
        return runs
    return runs.assign(**{ROLES: runs["sweep_run_id"].map(lambda i: known.get(i))})


PRECEDENCE = {"scientific": 3, "nuisance": 2, "fixed": 1}


def roles(df: pd.DataFrame) -> dict[str, str]:
    """The role of each hyperparameter that takes more than one value among ``df``'s runs: what a
    sweep's space said (scientific wins over nuisance over fixed when sweeps disagree); for a sweep
    that recorded no roles, what varies within it is scientific. The seed is always a nuisance."""
    names = varied(df)
    out = {n: "fixed" for n in names}  # varied only between sweeps, fixed within each
    if "sweep_run_id" in df and len(df):
        parts = [part for _, part in df.groupby(df["sweep_run_id"].fillna(""), sort=False)]
    else:
        parts = [df]
    for part in parts:
        recorded = _recorded(part)
        for n in names:
            role = recorded.get(n) if recorded is not None else (
                "scientific" if param(n) in part and _values(part[param(n)]) > 1 else None)  # fmt: skip
            if role in PRECEDENCE and PRECEDENCE[role] > PRECEDENCE[out[n]]:
                out[n] = role
    seed = param(configuration.SEED)
    if seed in df and _values(df[seed]) > 1:
        out[configuration.SEED] = "nuisance"
    return out


def _recorded(part: pd.DataFrame) -> dict[str, str] | None:
    texts = part[ROLES].dropna() if ROLES in part else pd.Series(dtype=object)
    if not len(texts):
        return None
    try:
        return dict(json.loads(str(texts.iloc[0])))
    except (ValueError, TypeError):
        return None


def scientific_varied(df: pd.DataFrame) -> list[str]:
    """The scientific hyperparameters a sweep of ``df`` varied: what to plot and to rank importance
    over (never the seed, a nuisance dimension or a runtime record such as ``amp_reason``)."""
    return [n for n, r in roles(df).items() if r == "scientific"]


def nuisance_varied(df: pd.DataFrame) -> list[str]:
    """The nuisance dimensions that vary among ``df``'s runs (the seed, weight decay where marked so)."""
    return [n for n, r in roles(df).items() if r == "nuisance"]


def run_ids(df: pd.DataFrame) -> str:
    """The ``runs`` cell of a table row: the MLflow run ids it came from."""
    return " ".join(df["run_id"])
