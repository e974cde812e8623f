"""The pixel study's report items (the report's §4): Table 7, Figure 7 and the sample grids.

Each model (param ``model``) is represented by its best configuration; metrics: per-epoch
``train_bpd``/``val_bpd`` (at the best epoch), final ``lossless_bpd`` (bits/dim on the lossless
subset), artifact ``samples.png``.
"""

from __future__ import annotations

import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.figures import Figure, histories, plot_curves, subplots
from raysweep.analysis.registry import Image, Skip, StudyRuns, section
from raysweep.analysis.runs import download
from raysweep.analysis.tables import Table, cell

STUDY = "pixel"
NAMES = {"pixelcnn": "PixelCNN", "row_lstm": "Row LSTM", "diagonal_bilstm": "Diagonal BiLSTM"}
SHAPE = ("layers", "hidden")


def _per_model(r: StudyRuns) -> list[tuple[str, pd.DataFrame]]:
    """(model, its best configuration's runs), best model first."""
    if "params.model" not in r.runs:
        raise Skip(f"{STUDY}: the runs have no 'model' param")
    best = []
    for model in dict.fromkeys(r.runs["params.model"].dropna()):
        g = select.best_group(r.runs[r.runs["params.model"] == model], r.metric, r.mode)
        if g is not None:
            best.append((str(model), g))
    if not best:
        raise Skip(f"{STUDY}: no trial has a finite {r.metric}")
    return sorted(best, key=lambda mg: select.score(mg[1], r.metric), reverse=r.mode == "max")


@section(STUDY, "table7", "bits/dim per model")
def table7(r: StudyRuns) -> Table:
    rows = [{"model": NAMES.get(m, m), **{s: cell(g, select.param(s)) for s in SHAPE if select.param(s) in g},
             "train bits/dim": cell(g, "best.train_bpd"), "val bits/dim": cell(g, "best.val_bpd"),
             "lossless-subset bits/dim": cell(g, "metrics.lossless_bpd"), "rank": rank,
             "runs": select.run_ids(g)} for rank, (m, g) in enumerate(_per_model(r), start=1)]  # fmt: skip
    fmt = {"train bits/dim": ".4f", "val bits/dim": ".4f", "lossless-subset bits/dim": ".4f"}
    title = f"Table 7: bits/dim of each model's best configuration (rank by {r.metric}, 1 = best)"
    return Table("table7", title, pd.DataFrame(rows), fmt)


@section(STUDY, "figure7", "bits/dim curves")
def figure7(r: StudyRuns) -> Figure:
    fig, axes = subplots(1, 1, size=(6.5, 4.0))
    ids = []
    for m, g in _per_model(r):
        rep = select.best_run(g, r.metric, r.mode)
        ids.append(rep["run_id"])
        h = histories(r.tracking_uri, rep["run_id"], ["train_bpd", "val_bpd"], r.cache)
        color = f"C{len(ids) - 1}"
        plot_curves(axes[0][0], {f"{NAMES.get(m, m)} {k.split('_')[0]}": v for k, v in h.items()}, "bits/dim", color)
    if not axes[0][0].lines:
        raise Skip(f"{STUDY}: no run logged train_bpd/val_bpd per epoch")
    return Figure("figure7", "Figure 7: training (dashed) and validation bits/dim per epoch, best run of each model",
                  fig, ids)  # fmt: skip


@section(STUDY, "samples", "sample grids")
def samples(r: StudyRuns) -> list[Image]:
    out = []
    for m, g in _per_model(r):
        rep = select.best_run(g, r.metric, r.mode)
        path = download(r.tracking_uri, rep["run_id"], "samples.png")
        if path is not None:
            out.append(Image(f"samples_{m}", f"Samples of {NAMES.get(m, m)} (run {rep['run_id']})", path,
                             [rep["run_id"]]))  # fmt: skip
    if not out:
        raise Skip(f"{STUDY}: no run has a samples.png artifact")
    return out
