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
    gs = select.groups(part)
    ok = select.ranked(part, r.leaky)
    honest = [g for g in gs if ok[g.index].all()]
    rows = []
    vs_col = f"vs {_name(honest[0])} (95% CI)" if honest else "vs ranked (95% CI)"
    for g in gs:
        leaky = not ok[g.index].all()
        cmp = select.versus(g, honest[0], r.metric, r.mode) if leaky and honest else None
        rows.append({"split": g["params.split"].iloc[0], **{k: cell(g, v) for k, v in COLUMNS.items()},
                     f"val {r.metric.removeprefix('val_')}": cell(g, f"best.{r.metric}"),
                     "val windows leaking 32-grams": cell(g, "metrics.leak_ngram32"),
                     "ranked": "no (leaky)" if leaky else "yes", vs_col: cmp,
                     "verdict": f"{select.verdict_text(cmp)}; leaky: shown, never ranked" if cmp else "",
                     "runs": select.run_ids(g)})  # fmt: skip
    title = (f"Table 5: random against temporal split ({_context(part, 'split')}); accuracy and perplexity "
             f"at the best epoch, mean ± std over seeds; leak = share of validation windows sharing a 32-gram "
             f"with train. The random split leaks: it is compared (seed-paired), never ranked")  # fmt: skip
    fmt = {f"val {r.metric.removeprefix('val_')}": ".4f"}
    return Table("table5", title, pd.DataFrame(rows), FMT | fmt | {"val windows leaking 32-grams": ".4f"})


def _name(g: pd.DataFrame) -> str:
    return str(g["params.split"].iloc[0]) if "params.split" in g else "ranked"


def _hidden_slice(r: StudyRuns) -> pd.DataFrame:
    part = select.one_factor(r.runs, "hidden_size", r.metric, r.mode)
    if part.empty:
        raise Skip(f"{STUDY}: no configurations that differ only in hidden_size")
    return part.sort_values("params.hidden_size", kind="stable")


@section(STUDY, "table6", "hidden-size ablation")
def table6(r: StudyRuns) -> Table:
    part = _hidden_slice(r)
    gs = select.groups(part)
    vs = select.against_best(gs, r.metric, r.mode, r.leaky)
    rows = [{"hidden size": g["params.hidden_size"].iloc[0], **{k: cell(g, v) for k, v in COLUMNS.items()},
             f"val {r.metric.removeprefix('val_')}": cell(g, f"best.{r.metric}"),
             "parameters": cell(g, "metrics.num_params"), "vs best (95% CI)": cmp, "verdict": verdict,
             "runs": select.run_ids(g)}
            for g, (cmp, verdict) in zip(gs, vs, strict=True)]  # fmt: skip
    title = (f"Table 6: hidden-size ablation ({_context(part, 'hidden_size')}); metrics at the best epoch, mean ± "
             f"std over seeds; each size against the best by {r.metric}, seed-paired")  # fmt: skip
    fmt = {f"val {r.metric.removeprefix('val_')}": ".4f"}
    return Table("table6", title, pd.DataFrame(rows), FMT | fmt | {"parameters": ",.0f"})


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
