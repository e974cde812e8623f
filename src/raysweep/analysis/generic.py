"""Sections for any sweep of any study: what Google's tuning playbook says to look at after a study.

The leaderboard of configurations, the best validation metric against each varied hyperparameter
(is the best at a boundary of the range? which trials failed?), every training curve in one
figure (a stated sample over a band of all, for many trials), and fANOVA hyperparameter importance
over the finished trials (the varied scientific hyperparameters only, a bounded subsample).
"""

from __future__ import annotations

import math
import numbers
import random
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.figures import Figure, histories, plot_curves, prefetch, subplots
from raysweep.analysis.registry import ANY_STUDY, Skip, StudyRuns, section
from raysweep.analysis.runs import history_table
from raysweep.analysis.tables import Table, cell

MIN_TRIALS_FOR_IMPORTANCE = 4
IMPORTANCE_MAX_TRIALS = 500  # fANOVA's cost grows with the trials: beyond this, a seeded random subsample
IMPORTANCE_TREES = 16  # Optuna's default is 64; 16 ranks the few dims of a sweep alike at a quarter of the cost
CURVES_ALL = 100  # up to this many trials every curve is drawn
CURVES_SAMPLE = 50  # beyond: this many, a seeded random sample, over a band of all


def table_columns(runs: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The hyperparameters a ranked table shows (scientific ones a sweep varied, then the others
    that differ between rows, then nuisance ones) and their headers ("weight_decay (nuisance)")."""
    roles = select.roles(runs)
    order = ([n for n, r in roles.items() if r == "scientific"] + [n for n, r in roles.items() if r == "fixed"]
             + [n for n, r in roles.items() if r == "nuisance" and n != "seed"])  # fmt: skip
    if not order:
        order = [c[len("params.") :] for c in select.config_columns(runs)][:6]
    return order, {n: f"{n} (nuisance)" if roles.get(n) == "nuisance" else n for n in order}


@section(ANY_STUDY, "trials", "every configuration, ranked")
def trials_table(r: StudyRuns) -> Table:
    """A row per configuration (seeds together), best mean first, each against the best (paired over
    seeds: difference, 95% interval, verdict); leaky and failed ones last."""
    names, headers = table_columns(r.runs)
    metric = f"best.{r.metric}"
    tests = [c for c in r.runs.columns if c.startswith("metrics.test_") and c.count("_") == 1]
    rows = []
    leak = [c for c in r.runs.columns if c.startswith("metrics.leak_")]
    seeds = select.param("seed") in r.runs and "seed" in select.roles(r.runs)
    gs = select.groups(r.runs)
    for g, (diff, verdict) in zip(gs, select.against_best(gs, r.metric, r.mode, r.leaky), strict=True):
        s = select.scored(g, r.metric)
        honest = bool(select.ranked(g, r.leaky).all())
        outcomes = Counter(o or st.lower() for o, st in zip(g["outcome"], g["status"], strict=True))
        rows.append({**{headers[n]: cell(g, select.param(n)) for n in names},
                     **({"seeds (nuisance)": _seeds(g)} if seeds else {}),
                     f"best {r.metric}": cell(s, metric) if len(s) else math.nan,
                     "vs best (95% CI)": diff, "verdict": verdict,
                     **{c[len("metrics.") :]: cell(s, c) if len(s) else math.nan for c in tests},
                     **({"ranked": "yes" if honest else "no (leaky)"} if r.leaky else {}),
                     **{c[len("metrics.") :]: cell(g, c) for c in leak},
                     "outcome": ", ".join(f"{k}×{v}" if v > 1 else k for k, v in outcomes.items()),
                     "runs": select.run_ids(g), "_score": float(s[metric].mean()) if len(s) else math.nan,
                     "_honest": honest})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(["_honest", "_score"], ascending=[False, r.mode == "min"], na_position="last")
    frame = frame.drop(columns=["_score", "_honest"])
    fmts = {headers[n]: "g" for n in names}
    title = (f"{r.study}: every configuration, ranked by mean best {r.metric} ({r.mode}) over its seeds, each "
             f"against the best (seed-paired difference, 95% interval, verdict)")  # fmt: skip
    if r.leaky:
        title += "; leaky configurations follow, shown but not ranked"
    return Table("trials", title, frame, fmts)


def _seeds(g: pd.DataFrame) -> str:
    return ", ".join(dict.fromkeys(str(v) for v in g[select.param("seed")].dropna()))


@section(ANY_STUDY, "hparams", "best validation metric against each varied hyperparameter")
def hparam_figure(r: StudyRuns) -> Figure:
    names = select.scientific_varied(r.runs)  # never a runtime record such as amp_reason, nor the seed
    if not names:
        raise Skip(f"{r.study}: no scientific hyperparameter takes more than one value; nothing to plot against")
    nuisance = select.nuisance_varied(r.runs)
    ok = select.scored(r.runs, r.metric)
    if ok.empty:
        raise Skip(f"{r.study}: no trial has a finite {r.metric}")
    bad = r.runs[select.failed(r.runs)]
    y = ok[f"best.{r.metric}"].astype(float)
    lo, hi = float(y.min()), float(y.max())
    floor = lo - 0.08 * ((hi - lo) or abs(lo) or 1.0)  # where trials without a metric are drawn
    fig, axes = subplots(1, len(names), size=(3.8, 3.4), sharey=True)
    honest = ok[select.ranked(ok, r.leaky)]
    best = select.best_run(honest if len(honest) else ok, r.metric, r.mode)
    for ax, n in zip(axes[0], names, strict=True):
        col = select.param(n)
        ticks = None if _numeric(r.runs[col]) else sorted({str(v) for v in r.runs[col].dropna()})
        xs_ok, xs_bad, bx = (_positions(s, ticks) for s in (ok[col], bad[col], pd.Series([best[col]])))
        ax.scatter(xs_ok, y, s=22, alpha=0.8, label="finished")
        if len(bad):
            ax.scatter(xs_bad, [floor] * len(bad), marker="x", color="red", label="failed / diverged")
        ax.scatter(bx, [best[f"best.{r.metric}"]], marker="*", s=160, color="gold", edgecolor="k", label="best")
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks, rotation=30)
        elif _log_scale(r.runs[col]):
            ax.set_xscale("log")
        ax.set_xlabel(n)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"best {r.metric}")
    axes[0][0].legend(fontsize=7)
    title = f"{r.study}: best {r.metric} per trial against each scientific hyperparameter a sweep varied"
    if nuisance:
        title += f" (nuisance, not plotted: {', '.join(nuisance)})"
    fig.suptitle(f"{r.study}: best {r.metric} per trial", fontsize=10)
    return Figure("hparams", title + (f" ({len(bad)} failed/diverged, marked x)" if len(bad) else ""),
                  fig, list(r.runs["run_id"]))  # fmt: skip


@section(ANY_STUDY, "curves", "all training curves")
def curves_figure(r: StudyRuns) -> Figure:
    """Every curve up to CURVES_ALL trials; beyond that, a stated random sample of them drawn over
    the median and 10-90 % band of all the finished trials' curves (a figure of 10,000 lines says nothing)."""
    metrics = [r.metric, "train_loss"]
    ids = list(r.runs["run_id"])
    bad = set(r.runs.loc[select.failed(r.runs), "run_id"])
    many = len(ids) > CURVES_ALL
    drawn_ids = sorted(random.Random(0).sample(ids, CURVES_SAMPLE), key=ids.index) if many else ids
    prefetch(r.tracking_uri, drawn_ids, metrics, r.cache)
    fig, axes = subplots(1, 2)
    drawn = 0
    names = select.varied(r.runs)  # a line's label: what sets its run apart (hyperparameters)
    if select.param("seed") in r.runs and r.runs[select.param("seed")].nunique() > 1:
        names.append("seed")
    rows = r.runs.set_index("run_id")
    for ax, m in zip(axes[0], metrics, strict=True):
        if many and _band(ax, history_table(r.tracking_uri, [i for i in ids if i not in bad], m)):
            drawn += 1
        for i, run_id in enumerate(drawn_ids):
            h = histories(r.tracking_uri, run_id, [m], r.cache)
            label = " ".join(f"{n}={rows.at[run_id, select.param(n)]}" for n in names) or run_id[:8]
            label += " (failed)" if run_id in bad else ""
            ok_style = {"alpha": 0.7, "color": f"C{i % 10}"}
            style = {"color": "red", "ls": "--", "alpha": 0.8} if run_id in bad else ok_style
            if m in h:  # a sample of many runs is named by the title, not a legend line each
                ax.plot(h[m].index, h[m].values, lw=1, label=None if many else label, **style)
                drawn += 1
    if not drawn:
        raise Skip(f"{r.study}: no run logged {r.metric} or train_loss per epoch")
    for ax, m in zip(axes[0], metrics, strict=True):
        plot_curves(ax, {}, m)
    ax = axes[0][1] if axes[0][1].lines else axes[0][0]  # one legend, outside the panels: a line per run
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    if many:
        title = (f"{r.study}: {r.metric} and train_loss: a random sample of {len(drawn_ids)} of the {len(ids)} "
                 f"trials drawn as lines (failed/diverged dashed red), over the median and 10-90 % band of all "
                 f"{len(ids) - len(bad)} finished ones")  # fmt: skip
        fig.suptitle(f"{r.study}: {len(drawn_ids)} of {len(ids)} trials, band of all", fontsize=10)
    else:
        title = f"{r.study}: {r.metric} and train_loss of all {len(ids)} trials (failed/diverged dashed red)"
        fig.suptitle(f"{r.study}: all {len(ids)} trials", fontsize=10)
    return Figure("curves", title, fig, ids)


def _band(ax: Any, table: pd.DataFrame) -> bool:
    """Median and 10-90 % quantiles over the runs (rows) at each epoch (column); False if empty."""
    if table.empty:
        return False
    q = table.quantile([0.1, 0.5, 0.9]).T  # (epochs, 3)
    ax.fill_between(q.index, q[0.1], q[0.9], color="tab:blue", alpha=0.2, label=f"10-90 % of {len(table)}")
    ax.plot(q.index, q[0.5], color="tab:blue", lw=2, label="median")
    return True


def importance_dims(runs: pd.DataFrame) -> list[str]:
    """The hyperparameters importance is fitted on: the scientific ones a sweep varied
    (``select.scientific_varied``), never the seed, a nuisance dimension or a runtime record
    (device, amp, amp_reason, data, epochs, ``option.*``), which say how a trial ran, not what it tried."""
    return select.scientific_varied(runs)


def importance_sample(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, int]:
    """(the finished trials importance is fitted on, how many finished trials there are): a seeded
    random subsample of IMPORTANCE_MAX_TRIALS when there are more, so its cost is bounded."""
    ok = select.scored(runs, metric)
    return (ok.sample(n=IMPORTANCE_MAX_TRIALS, random_state=0) if len(ok) > IMPORTANCE_MAX_TRIALS else ok), len(ok)


def importances(runs: pd.DataFrame, metric: str, mode: str) -> dict[str, float]:
    """fANOVA importance (Optuna's evaluator, IMPORTANCE_TREES trees) of each varied scientific
    hyperparameter (``importance_dims``) for ``metric``, over ``importance_sample``'s trials.

    Raises Skip with fewer than MIN_TRIALS_FOR_IMPORTANCE finished trials or nothing varied.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    ok, _ = importance_sample(runs, metric)
    if len(ok) < MIN_TRIALS_FOR_IMPORTANCE:
        raise Skip(f"importance needs >= {MIN_TRIALS_FOR_IMPORTANCE} finished trials with {metric}, found {len(ok)}")
    names = importance_dims(ok)
    if not names:
        raise Skip("importance: no hyperparameter varied among the finished trials")
    dists, values = {}, {}
    for n in names:
        col = ok[select.param(n)]
        if _numeric(col) and col.notna().all():
            lo, hi, log = col.min(), col.max(), _log_scale(col)
            if all(float(v).is_integer() for v in col):
                dists[n], values[n] = IntDistribution(int(lo), int(hi), log=log and lo >= 1), col.astype(int).tolist()
            else:
                dists[n], values[n] = FloatDistribution(float(lo), float(hi), log=log), col.astype(float).tolist()
        else:
            strs = col.astype(str)
            dists[n], values[n] = CategoricalDistribution(sorted(set(strs))), strs.tolist()
    if ok[f"best.{metric}"].astype(float).nunique() < 2:
        raise Skip(f"importance: every finished trial has the same {metric}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    scores = ok[f"best.{metric}"].astype(float).tolist()
    study.add_trials([optuna.trial.create_trial(params={n: values[n][i] for n in names}, distributions=dists,
                                                value=v) for i, v in enumerate(scores)])  # fmt: skip
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=IMPORTANCE_TREES, seed=0)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


@section(ANY_STUDY, "importance", "hyperparameter importance (fANOVA)")
def importance_figure(r: StudyRuns) -> Figure:
    try:
        imp = importances(r.runs, r.metric, r.mode)
    except Skip as exc:
        raise Skip(f"{r.study}: {exc}") from None
    fig, axes = subplots(1, 1, size=(5.5, 0.5 + 0.45 * len(imp)))
    ax = axes[0][0]
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.text(imp[n], i, f" {imp[n]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel(f"fANOVA importance for {r.metric}")
    used, n = importance_sample(r.runs, r.metric)
    over = f"a random subsample of {len(used)} of the {n} finished trials" if len(used) < n else f"{n} finished trials"
    title = (f"{r.study}: hyperparameter importance for {r.metric} (fANOVA, {IMPORTANCE_TREES} trees, over {over}; "
             f"varied scientific hyperparameters only)")  # fmt: skip
    ax.set_title(f"fANOVA over {len(used)} of {n} finished trials", fontsize=9)
    return Figure("importance", title, fig, list(used["run_id"]))


def _numeric(col: pd.Series) -> bool:
    vals = col.dropna()
    return len(vals) > 0 and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals)


def _log_scale(col: pd.Series) -> bool:
    vals = col.dropna().astype(float)
    return bool(len(vals)) and vals.min() > 0 and vals.max() / vals.min() >= 10


def _positions(col: pd.Series, ticks: list[str] | None) -> list[float]:
    """x positions: the values themselves, or their index among the category ``ticks``."""
    if ticks is None:
        return [float(v) if isinstance(v, numbers.Real) else np.nan for v in col]
    return [float(ticks.index(str(v))) if str(v) in ticks else np.nan for v in col]

