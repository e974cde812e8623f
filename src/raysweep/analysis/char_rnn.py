"""The char_rnn study's report items (the report's §3): Tables 5-6, Figure 6, generated text.

Metrics read (per epoch at the best epoch): train/val accuracy and perplexity; once per run:
``leak_ngram32`` (share of validation windows sharing a 32-gram with the training text) and
``num_params``; artifact ``generated.txt`` (the continuation of the seed phrase).
"""

from __future__ import annotations

import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.figures import Figure, histories, plot_curves, subplots
from raysweep.analysis.registry import Skip, StudyRuns, Text, section
from raysweep.analysis.runs import text_artifact
from raysweep.analysis.tables import Table, cell

STUDY = "char_rnn"
COLUMNS = {"train acc": "best.train_acc", "val acc": "best.val_acc",
           "train ppl": "best.train_ppl", "val ppl": "best.val_ppl"}  # fmt: skip
FMT = {"train acc": ".4f", "val acc": ".4f", "train ppl": ".2f", "val ppl": ".2f"}


def _context(g: pd.DataFrame, skip: str) -> str:
    """The fixed params of a slice, for a title."""
    names = [n for n in ("split", "hidden_size", "num_layers") if n != skip and select.param(n) in g]
    return ", ".join(f"{n}={g[select.param(n)].iloc[0]}" for n in names)


@section(STUDY, "table5", "random against temporal split")
def table5(r: StudyRuns) -> Table:
    part = select.one_factor(r.runs, "split", r.metric, r.mode)
    if part.empty:
        raise Skip(f"{STUDY}: no configuration ran with more than one split (param split random/temporal)")
    rows = [{"split": g["params.split"].iloc[0], **{k: cell(g, v) for k, v in COLUMNS.items()},
             "val windows leaking 32-grams": cell(g, "metrics.leak_ngram32"), "runs": select.run_ids(g)}
            for g in select.groups(part)]  # fmt: skip
    title = (f"Table 5: random against temporal split ({_context(part, 'split')}); accuracy and perplexity "
             f"at the best epoch; leak = share of validation windows sharing a 32-gram with train")  # fmt: skip
    return Table("table5", title, pd.DataFrame(rows), FMT | {"val windows leaking 32-grams": ".4f"})


def _hidden_slice(r: StudyRuns) -> pd.DataFrame:
    part = select.one_factor(r.runs, "hidden_size", r.metric, r.mode)
    if part.empty:
        raise Skip(f"{STUDY}: no configurations that differ only in hidden_size")
    return part.sort_values("params.hidden_size", kind="stable")


@section(STUDY, "table6", "hidden-size ablation")
def table6(r: StudyRuns) -> Table:
    part = _hidden_slice(r)
    rows = [{"hidden size": g["params.hidden_size"].iloc[0], **{k: cell(g, v) for k, v in COLUMNS.items()},
             "parameters": cell(g, "metrics.num_params"), "runs": select.run_ids(g)}
            for g in select.groups(part)]  # fmt: skip
    title = f"Table 6: hidden-size ablation ({_context(part, 'hidden_size')}); metrics at the best epoch"
    return Table("table6", title, pd.DataFrame(rows), FMT | {"parameters": ",.0f"})


@section(STUDY, "figure6", "hidden-size ablation curves")
def figure6(r: StudyRuns) -> Figure:
    part = _hidden_slice(r)
    fig, axes = subplots(2, 2)
    ids = []
    for g in select.groups(part):
        rep = select.best_run(g, r.metric, r.mode)
        ids.append(rep["run_id"])
        h = histories(r.tracking_uri, rep["run_id"], ["train_ppl", "val_ppl", "train_acc", "val_acc",
                                                       "train_loss", "val_loss"], r.cache)  # fmt: skip
        label, color = f"h={rep['params.hidden_size']}", f"C{len(ids) - 1}"
        for ax, kind in zip(axes.flat[:3], ("ppl", "acc", "loss"), strict=True):
            plot_curves(ax, {f"{label} {k.split('_')[0]}": v for k, v in h.items() if k.endswith(kind)}, kind, color)
    axes[1][1].axis("off")
    if not any(ax.lines for ax in axes.flat):
        raise Skip(f"{STUDY}: the hidden-size runs logged no per-epoch metrics")
    return Figure("figure6", f"Figure 6: perplexity, accuracy and loss per epoch by hidden size, train dashed "
                             f"({_context(part, 'hidden_size')})", fig, ids)  # fmt: skip


@section(STUDY, "generated", "generated text from the seed phrase")
def generated(r: StudyRuns) -> Text:
    g = select.best_group(r.rankable, r.metric, r.mode)
    if g is None:
        raise Skip(f"{STUDY}: no rankable trial (split=temporal) has a finite {r.metric}")
    rep = select.best_run(g, r.metric, r.mode)
    text = text_artifact(r.tracking_uri, rep["run_id"], "generated.txt")
    if text is None:
        raise Skip(f"{STUDY}: the best run {rep['run_id']} has no generated.txt")
    why = f"lowest {r.metric} among temporal-split trials; random-split ones leak validation text"
    return Text("generated", f"Generated text of the best configuration (run {rep['run_id']}: {why})",
                text.strip(), [rep["run_id"]])  # fmt: skip
