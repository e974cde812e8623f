"""Sections for any sweep of any study: what Google's tuning playbook says to look at after a study.

The leaderboard of configurations, the best validation metric against each varied hyperparameter
(is the best at a boundary of the range? which trials failed?), every training curve in one
figure, and fANOVA hyperparameter importance over the finished trials.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter

import numpy as np
import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.figures import Figure, histories, plot_curves, subplots
from raysweep.analysis.registry import ANY_STUDY, Skip, StudyRuns, section
from raysweep.analysis.tables import Table, cell

MIN_TRIALS_FOR_IMPORTANCE = 4


@section(ANY_STUDY, "trials", "every configuration, ranked")
def trials_table(r: StudyRuns) -> Table:
    """A row per configuration (seeds together), best first; failed ones last with their outcome."""
    names = select.varied(r.runs) or [c[len("params.") :] for c in select.config_columns(r.runs)][:6]
    metric = f"best.{r.metric}"
    tests = [c for c in r.runs.columns if c.startswith("metrics.test_") and c.count("_") == 1]
    rows = []
    ok = select.ranked(r.runs, r.leaky)
    leak = [c for c in r.runs.columns if c.startswith("metrics.leak_")]
    for g in select.groups(r.runs):
        s = select.scored(g, r.metric)
        honest = bool(ok[g.index].all())
        outcomes = Counter(o or st.lower() for o, st in zip(g["outcome"], g["status"], strict=True))
        rows.append({**{n: cell(g, select.param(n)) for n in names},
                     f"best {r.metric}": cell(s, metric) if len(s) else math.nan,
                     **{c[len("metrics.") :]: cell(s, c) if len(s) else math.nan for c in tests},
                     **({"ranked": "yes" if honest else "no (leaky)"} if r.leaky else {}),
                     **{c[len("metrics.") :]: cell(g, c) for c in leak},
                     "outcome": ", ".join(f"{k}×{v}" if v > 1 else k for k, v in outcomes.items()),
                     "runs": select.run_ids(g), "_score": select.score(g, r.metric), "_honest": honest})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(["_honest", "_score"], ascending=[False, r.mode == "min"], na_position="last")
    frame = frame.drop(columns=["_score", "_honest"])
    fmts = {n: "g" for n in names}
    title = f"{r.study}: every configuration, ranked by best {r.metric} ({r.mode})"
    if r.leaky:
        title += "; leaky configurations follow, shown but not ranked"
    return Table("trials", title, frame, fmts)


@section(ANY_STUDY, "hparams", "best validation metric against each varied hyperparameter")
def hparam_figure(r: StudyRuns) -> Figure:
    names = select.varied(r.runs)
    if not names:
        raise Skip(f"{r.study}: no hyperparameter takes more than one value; nothing to plot against")
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
    title = f"{r.study}: best {r.metric} per trial against each varied hyperparameter"
    fig.suptitle(f"{r.study}: best {r.metric} per trial", fontsize=10)
    return Figure("hparams", title + (f" ({len(bad)} failed/diverged, marked x)" if len(bad) else ""),
                  fig, list(r.runs["run_id"]))  # fmt: skip


@section(ANY_STUDY, "curves", "all training curves")
def curves_figure(r: StudyRuns) -> Figure:
    metrics = [r.metric, "train_loss"]
    fig, axes = subplots(1, 2)
    drawn = 0
    bad = set(r.runs.loc[select.failed(r.runs), "run_id"])
    names = select.varied(r.runs, exclude=("device",))  # a line's label: what sets it apart, seed included
    for i, (_, row) in enumerate(r.runs.iterrows()):
        run_id = row["run_id"]
        h = histories(r.tracking_uri, run_id, metrics, r.cache)
        label = " ".join(f"{n}={row[select.param(n)]}" for n in names) or run_id[:8]
        style = {"color": "red", "ls": "--", "alpha": 0.8} if run_id in bad else {"alpha": 0.7, "color": f"C{i % 10}"}
        for ax, m in zip(axes[0], metrics, strict=True):
            if m in h:
                ax.plot(h[m].index, h[m].values, lw=1, label=label + (" (failed)" if run_id in bad else ""), **style)
                drawn += 1
    if not drawn:
        raise Skip(f"{r.study}: no run logged {r.metric} or train_loss per epoch")
    for ax, m in zip(axes[0], metrics, strict=True):
        plot_curves(ax, {}, m)
    ax = axes[0][1] if axes[0][1].lines else axes[0][0]  # one legend, outside the panels: a line per run
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    title = f"{r.study}: {r.metric} and train_loss of all {len(r.runs)} trials (failed/diverged dashed red)"
    fig.suptitle(f"{r.study}: all {len(r.runs)} trials", fontsize=10)
    return Figure("curves", title, fig, list(r.runs["run_id"]))


def importances(runs: pd.DataFrame, metric: str, mode: str) -> dict[str, float]:
    """fANOVA importance of each varied hyperparameter for ``metric`` (Optuna's evaluator).

    Raises Skip with fewer than MIN_TRIALS_FOR_IMPORTANCE finished trials or nothing varied.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    ok = select.scored(runs, metric)
    if len(ok) < MIN_TRIALS_FOR_IMPORTANCE:
        raise Skip(f"importance needs >= {MIN_TRIALS_FOR_IMPORTANCE} finished trials with {metric}, found {len(ok)}")
    names = select.varied(ok)
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
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
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
    n = len(select.scored(r.runs, r.metric))
    title = f"{r.study}: hyperparameter importance for {r.metric} (fANOVA over {n} finished trials)"
    return Figure("importance", title, fig, list(select.scored(r.runs, r.metric)["run_id"]))


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

