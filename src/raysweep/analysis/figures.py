"""Figures: matplotlib (Agg) figures with a title and the run ids they came from, saved as PNG."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep.analysis.runs import histories_of


@dataclass
class Figure:
    name: str  # file stem
    title: str
    fig: Any  # matplotlib.figure.Figure
    runs: list[str] = field(default_factory=list)


def subplots(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.6), **kw: Any) -> tuple[Any, Any]:
    """``plt.subplots`` on the Agg backend, ``size`` per panel; the figure is closed for pyplot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kw)
    plt.close(fig)  # we keep the object; pyplot's global state does not
    return fig, axes


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def histories(uri: str, run_id: str, metrics: list[str], cache: dict[str, Any] | None = None) -> dict[str, pd.Series]:
    """Per-epoch histories of ``metrics`` for one run (memoised in ``cache``); missing ones omitted.

    A run and metrics that ``prefetch`` read already cost nothing; otherwise one batched read."""
    cache = {} if cache is None else cache
    missing = [m for m in metrics if f"history/{run_id}/{m}" not in cache]
    if missing:
        prefetch(uri, [run_id], missing, cache)
    return {m: cache[f"history/{run_id}/{m}"] for m in metrics if len(cache[f"history/{run_id}/{m}"])}


def prefetch(uri: str, run_ids: list[str], metrics: list[str], cache: dict[str, Any]) -> None:
    """Read the histories of ``metrics`` for all ``run_ids`` into ``cache`` in one batched read (a
    figure of many runs calls this once instead of ``histories`` per run)."""
    found = histories_of(uri, run_ids, metrics)
    for rid in run_ids:
        for m in metrics:
            cache[f"history/{rid}/{m}"] = found.get((rid, m), pd.Series(dtype=float, name=m))


def plot_curves(ax: Any, curves: dict[str, pd.Series], ylabel: str, color: str | None = None) -> None:
    """One line per labelled series against epoch; training curves dashed, validation solid."""
    from matplotlib.ticker import MaxNLocator

    for label, s in curves.items():
        ax.plot(s.index, s.values, marker="o" if len(s) < 12 else None, ms=3, label=label, color=color,
                ls="--" if "train" in label else "-")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = ax.get_xlim()
    if hi - lo < 2:  # one epoch: autoscale spans less than one, and the locator falls back to fractions
        ax.set_xlim(round((lo + hi) / 2) - 1, round((lo + hi) / 2) + 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)


def short(run_id: str) -> str:
    return run_id[:8]
