"""The pixel study's report items (the report's §4): Table 7, Figure 7 and the sample grids.

Bits/dim compare only at one image size on one data source (8x8 images are far easier than 32x32),
so every item is made once per such comparable set (params ``image_size`` and ``data``), and a
model is never ranked against a run of another size. Within a set each model (param ``model``) is
represented by its best configuration; metrics: per-epoch ``train_bpd``/``val_bpd`` (at the best
epoch), final ``lossless_bpd`` (bits/dim on the lossless subset), artifact ``samples.png``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.figures import Figure, histories, plot_curves, subplots
from raysweep.analysis.registry import Image, Skip, StudyRuns, section
from raysweep.analysis.runs import download
from raysweep.analysis.tables import Table, cell

STUDY = "pixel"
NAMES = {"pixelcnn": "PixelCNN", "row_lstm": "Row LSTM", "diagonal_bilstm": "Diagonal BiLSTM"}
SHAPE = ("layers", "hidden")
COMPARABLE = ("image_size", "data")  # bits/dim compare only within one value of each


@dataclass(frozen=True)
class Comparable:
    """One comparable set of runs: its suffix for file names, its words for titles, and its runs."""

    suffix: str  # "" when the experiment has one set, else e.g. "_32x32" (plus "_d2" per extra data source)
    label: str  # e.g. "32x32 images, cifar10"
    runs: pd.DataFrame


def comparable_sets(runs: pd.DataFrame) -> list[Comparable]:
    """``runs`` split by image size and data source, largest images first."""
    cols = [select.param(c) for c in COMPARABLE if select.param(c) in runs]
    if not cols:
        return [Comparable("", "", runs)]
    keys = runs[cols].astype(str).apply(tuple, axis=1)
    order = sorted(dict.fromkeys(keys), key=lambda k: -_size(k[0]) if cols[0].endswith("image_size") else 0)
    sizes: dict[str, int] = {}
    out = []
    for k in order:
        size = k[0] if cols[0].endswith("image_size") else ""
        sizes[size] = sizes.get(size, 0) + 1
        words = [f"{size}x{size} images" if size and size != "nan" else ""] + [v for v in k[1:] if v != "nan"]
        suffix = "" if len(order) == 1 else f"_{size}x{size}" + (f"_d{sizes[size]}" if sizes[size] > 1 else "")
        out.append(Comparable(suffix, ", ".join(w for w in words if w), runs[keys == k]))
    return out


def _size(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 0


def _per_model(r: StudyRuns, runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(model, its best configuration's runs) within one comparable set, best model first."""
    if "params.model" not in runs:
        raise Skip(f"{STUDY}: the runs have no 'model' param")
    best = []
    for model in dict.fromkeys(runs["params.model"].dropna()):
        g = select.best_group(runs[runs["params.model"] == model], r.metric, r.mode)
        if g is not None:
            best.append((str(model), g))
    return sorted(best, key=lambda mg: select.score(mg[1], r.metric), reverse=r.mode == "max")


def _sets(r: StudyRuns) -> list[tuple[Comparable, list[tuple[str, pd.DataFrame]]]]:
    """Every comparable set with a scored trial, with its per-model best configurations."""
    out = [(c, pm) for c in comparable_sets(r.runs) if (pm := _per_model(r, c.runs))]
    if not out:
        raise Skip(f"{STUDY}: no trial has a finite {r.metric}")
    return out


def _at(c: Comparable) -> str:
    return f" at {c.label}" if c.label else ""


@section(STUDY, "table7", "bits/dim per model")
def table7(r: StudyRuns) -> list[Table]:
    """One Table 7 per comparable set: ranks never cross image sizes or data sources."""
    fmt = {"train bits/dim": ".4f", "val bits/dim": ".4f", "lossless-subset bits/dim": ".4f"}
    out = []
    for c, per_model in _sets(r):
        vs = select.against_best([g for _, g in per_model], r.metric, r.mode, r.leaky)
        rows = [{"model": NAMES.get(m, m), **{s: cell(g, select.param(s)) for s in SHAPE if select.param(s) in g},
                 "train bits/dim": cell(g, "best.train_bpd"), "val bits/dim": cell(g, "best.val_bpd"),
                 "lossless-subset bits/dim": cell(g, "metrics.lossless_bpd"), "rank": rank,
                 "vs best (95% CI)": cmp, "verdict": verdict, "runs": select.run_ids(g)}
                for rank, ((m, g), (cmp, verdict)) in enumerate(zip(per_model, vs, strict=True), start=1)]  # fmt: skip
        title = (f"Table 7{_at(c)}: bits/dim of each model's best configuration, mean ± std over seeds (rank by "
                 f"mean {r.metric}, 1 = best; each against the best, seed-paired: a rank within seed noise is "
                 f"not resolved)")  # fmt: skip
        out.append(Table(f"table7{c.suffix}", title, pd.DataFrame(rows), fmt))
    return out


@section(STUDY, "figure7", "bits/dim curves")
def figure7(r: StudyRuns) -> list[Figure]:
    out = []
    for c, per_model in _sets(r):
        fig, axes = subplots(1, 1, size=(6.5, 4.0))
        ids = []
        for m, g in per_model:
            rep = select.best_run(g, r.metric, r.mode)
            ids.append(rep["run_id"])
            h = histories(r.tracking_uri, rep["run_id"], ["train_bpd", "val_bpd"], r.cache)
            curves = {f"{NAMES.get(m, m)} {k.split('_')[0]}": v for k, v in h.items()}
            plot_curves(axes[0][0], curves, "bits/dim", f"C{len(ids) - 1}")
        if axes[0][0].lines:
            out.append(Figure(f"figure7{c.suffix}", f"Figure 7{_at(c)}: training (dashed) and validation bits/dim "
                              "per epoch, best run of each model", fig, ids))  # fmt: skip
    if not out:
        raise Skip(f"{STUDY}: no run logged train_bpd/val_bpd per epoch")
    return out


@section(STUDY, "samples", "sample grids")
def samples(r: StudyRuns) -> list[Image]:
    out = []
    for c, per_model in _sets(r):
        for m, g in per_model:
            rep = select.best_run(g, r.metric, r.mode)
            path = download(r.tracking_uri, rep["run_id"], "samples.png")
            if path is not None:
                out.append(Image(f"samples{c.suffix}_{m}", f"Samples of {NAMES.get(m, m)}{_at(c)} "
                                 f"(run {rep['run_id']})", path, [rep["run_id"]]))  # fmt: skip
    if not out:
        raise Skip(f"{STUDY}: no run has a samples.png artifact")
    return out
