"""The CNN study's report items (the report's §2): Tables 1-4 and Figures 1-5.

"Best" is the configuration with the best mean ranking metric over its seeds; "baseline" is stage
0 of the latest staged ablation, else the runs of the report_ablation space's baseline config.
A group's figures use its best-scoring run's artifacts and histories.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.figures import Figure, histories, plot_curves, short, subplots
from raysweep.analysis.registry import Skip, StudyRuns, section
from raysweep.analysis.runs import download, json_artifact
from raysweep.analysis.tables import Table, blank, cell
from raysweep.configuration import StageDecision, decide_stage, same_value
from raysweep.stats import fmt_spread

STUDY = "cnn"
HYPERS = ["filters", "layers", "lr", "batch_size"]  # Table 3's order
ABLATED = ["lr", "batch_size", "filters", "layers"]  # Table 2's order
ACC = ".4f"
AVG = {"macro": "macro avg", "weighted": "weighted avg"}
FEATURE_LAYERS = ("conv_0", "conv_2", "conv_4", "conv_6")
FEATURE_IMAGES = 3  # test images shown
FEATURE_CHANNELS = 4  # most active channels shown per layer and image


def best(r: StudyRuns) -> pd.DataFrame:
    if "best" not in r.cache:
        r.cache["best"] = select.best_group(r.runs, r.metric, r.mode)
    if r.cache["best"] is None:
        raise Skip(f"{STUDY}: no trial has a finite {r.metric}; no best configuration")
    return r.cache["best"]


def baseline(r: StudyRuns) -> pd.DataFrame:
    if "baseline" not in r.cache:
        r.cache["baseline"] = _find_baseline(r)
    if r.cache["baseline"] is None:
        raise Skip(f"{STUDY}: no baseline run (stage 0 of a staged sweep, or the config {_baseline_config()})")
    return r.cache["baseline"]


def _baseline_config() -> dict[str, Any]:
    from raysweep.studies import STUDIES

    return dict(STUDIES[STUDY].space("report_ablation").baseline)


def _find_baseline(r: StudyRuns) -> pd.DataFrame | None:
    staged = select.latest_staged(r.runs)
    if len(stage0 := staged[staged["stage"] == 0]):
        return stage0
    runs = r.runs
    for k, v in _baseline_config().items():
        col = select.param(k)
        runs = runs[runs[col] == v] if col in runs else runs.iloc[0:0]
    if runs.empty:
        return None
    found = select.best_group(runs, r.metric, r.mode)
    return found if found is not None else select.groups(runs)[0]


def _rep(r: StudyRuns, group: pd.DataFrame) -> pd.Series:
    return select.best_run(group, r.metric, r.mode)


@section(STUDY, "table1", "per-class report of the best configuration")
def table1(r: StudyRuns) -> Table:
    g = best(r)
    rep = _rep(r, g)
    report = (json_artifact(r.tracking_uri, rep["run_id"], "classification_report.json") or {})
    classes = report.get("classes") or sorted(
        c[len("metrics.test_precision_") :] for c in g.columns
        if c.startswith("metrics.test_precision_") and c.split("_")[-1] not in ("macro", "weighted")
    )  # fmt: skip
    if not classes:
        raise Skip(f"{STUDY}: the best run {rep['run_id']} has no per-class metrics or classification_report.json")
    per = report.get("report", {})

    def value(name: str, metric: str, key: str) -> Any:
        v = cell(g, f"metrics.test_{metric}_{name}")  # over seeds; else the artifact of the best run
        return per.get(AVG.get(name, name), {}).get(key, math.nan) if blank(v) else v

    def row(label: str, name: str, support: Any) -> dict[str, Any]:
        return {"class": label, "precision": value(name, "precision", "precision"),
                "recall": value(name, "recall", "recall"), "f1-score": value(name, "f1", "f1-score"),
                "support": support, "runs": select.run_ids(g)}  # fmt: skip

    total = per.get("macro avg", {}).get("support")
    rows = [row(c, c, per.get(c, {}).get("support")) for c in classes]
    rows.append({"class": "accuracy", "f1-score": cell(g, "metrics.test_acc"), "support": total,
                 "runs": select.run_ids(g)})  # fmt: skip
    rows += [row("macro avg", "macro", total), row("weighted avg", "weighted", total)]
    frame = pd.DataFrame(rows, columns=["class", "precision", "recall", "f1-score", "support", "runs"])
    title = (f"Table 1: classification report of the best configuration on the test set "
             f"({_describe(g)}; {len(g)} run{'s' if len(g) > 1 else ''})")  # fmt: skip
    note = "accuracy is in the f1-score column, as sklearn prints it"
    return Table("table1", title, frame, {"support": ".0f"}, note=note)


@section(STUDY, "table2", "the staged ablation")
def table2(r: StudyRuns) -> Table:
    staged = select.latest_staged(r.runs)
    if staged.empty:
        raise Skip(f"{STUDY}: no staged ablation runs (tag raysweep.stage); "
                   f"run `raysweep sweep cnn --space report_ablation`")  # fmt: skip
    factors = [p for p in dict.fromkeys(staged.sort_values("stage")["stage_param"]) if p != "baseline"]
    hypers = list(dict.fromkeys([h for h in ABLATED if select.param(h) in staged] + factors))
    sweep = r.sweeps[r.sweeps["run_id"] == staged["sweep_run_id"].iloc[0]]
    won = {k: v for k, v in (sweep.iloc[0].to_dict() if len(sweep) else {}).items()
           if k.startswith("params.stage") and k.endswith("_winner")}  # fmt: skip
    rows, lines = [], []
    for stage in sorted(staged["stage"].unique()):
        part = staged[staged["stage"] == stage]
        p = part["stage_param"].iloc[0]
        decision = stage_decision(r, staged, int(stage), p, won.get(f"params.stage{stage}_{p}_winner"))
        if decision is not None:
            lines.append(f"stage {stage} winner {p}={decision.winner} {fmt_spread(decision.spread)}: {decision.line()}")
        gs = select.groups(part)
        kept = decision is not None and not any(same_value(decision.winner, g[select.param(p)].iloc[0]) for g in gs)
        if kept:  # the current value won: its runs are an earlier stage's, shown again here
            gs.append(_group_of(staged, part, p, decision.winner))
        for g in gs:
            picked = decision is not None and same_value(decision.winner, g[select.param(p)].iloc[0])
            cmp = decision.comparison if picked and decision else None
            vs = f"{p}={decision.reference} ({'replaced' if decision.replaced else 'runner-up'})" if cmp else ""
            state = "; resolved" if decision is not None and decision.resolved else "; not resolved"
            verdict = select.verdict_text(cmp) + state if cmp else ""
            rows.append({"stage": int(stage), "parameter": p, **{h: cell(g, select.param(h)) for h in hypers},
                         "train acc": cell(g, "best.train_acc"), "val acc": cell(g, f"best.{r.metric}"),
                         "outcome": _outcomes(g) + (f" (ran in stage {g['stage'].iloc[0]})" if g is gs[-1] and kept
                                                    else ""),
                         "winner": "yes" if picked else "", "vs": vs, "difference (95% CI)": cmp, "verdict": verdict,
                         "runs": select.run_ids(g)})  # fmt: skip
    name = staged["sweep_name"].iloc[0]
    title = (f"Table 2: staged ablation (sweep {name}): each stage varies one hyperparameter with the "
             f"earlier winners fixed; accuracies at each trial's best epoch, mean ± std over seeds; each winner "
             f"against the value it replaces, seed-paired")  # fmt: skip
    note = ("a stage's current value ran in an earlier stage and is not rerun; it competes from that row. "
            "A stage within seed noise is not resolved; it still advances by the mean. "
            + " | ".join(lines))  # fmt: skip
    return Table("table2", title, pd.DataFrame(rows), {h: "g" for h in hypers} | {"train acc": ACC, "val acc": ACC},
                 note=note.strip())  # fmt: skip


def _stage_slice(staged: pd.DataFrame, part: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The staged runs equal to stage ``part``'s in every hyperparameter but ``factor``: the stage's
    candidates, the current value's (run in an earlier stage and not rerun) among them."""
    others = [c for c in select.config_columns(staged) if c != select.param(factor)]
    ids = select.config_ids(staged, others)
    return staged[select.matching(ids, select.config_ids(part, others).iloc[0])]


def _group_of(staged: pd.DataFrame, part: pd.DataFrame, factor: str, value: Any) -> pd.DataFrame:
    """The runs of stage ``part``'s candidate ``factor`` = ``value``, from whichever stage ran them."""
    same = _stage_slice(staged, part, factor)
    return same[same[select.param(factor)].map(lambda v: same_value(v, value))]


def stage_decision(r: StudyRuns, staged: pd.DataFrame, stage: int, factor: str,
                   winner: Any = None) -> StageDecision | None:  # fmt: skip
    """Stage ``stage``'s decision from the runs, by the sweep's own rule (``configuration.decide_stage``):
    over the stage's candidates (``_stage_slice``), the current value being the baseline's and the
    winner the one the sweep recorded."""
    if factor == "baseline" or select.param(factor) not in staged:
        return None
    slice_ = _stage_slice(staged, staged[staged["stage"] == stage], factor)
    honest = slice_[select.ranked(slice_, r.leaky)]
    cands = [(g[select.param(factor)].iloc[0], select.seed_scores(g, r.metric)) for g in select.groups(honest)]
    base = staged[staged["stage"] == 0]
    current = base[select.param(factor)].iloc[0] if len(base) else None
    return decide_stage(factor, cands, current, r.mode, winner)


def _outcomes(g: pd.DataFrame) -> str:
    return " / ".join(dict.fromkeys(o or s.lower() for o, s in zip(g["outcome"], g["status"], strict=True)))


def _describe(g: pd.DataFrame) -> str:
    return ", ".join(f"{h} {g[select.param(h)].iloc[0]:g}" for h in HYPERS if select.param(h) in g)


def _pair(r: StudyRuns) -> list[tuple[str, pd.DataFrame]]:
    return [("baseline", baseline(r)), ("best", best(r))]


@section(STUDY, "table3", "baseline against best")
def table3(r: StudyRuns) -> Table:
    (_, base), (_, top) = pair = _pair(r)
    same = set(base["run_id"]) == set(top["run_id"])
    cmp = None if same else select.versus(top, base, r.metric, "max", "metrics.test_acc")
    verdict = "the baseline is the best configuration" if same else select.verdict_text(cmp)
    rows = [{"model": label, **{h: cell(g, select.param(h)) for h in HYPERS},
             "parameters": cell(g, "metrics.num_params"), "test accuracy": cell(g, "metrics.test_acc"),
             "test loss": cell(g, "metrics.test_loss"), "vs baseline (95% CI)": cmp if label == "best" else None,
             "verdict": verdict if label == "best" else "", "runs": select.run_ids(g)}
            for label, g in pair]  # fmt: skip
    fmts = {h: "g" for h in HYPERS} | {"parameters": ",.0f", "test accuracy": ACC, "test loss": ACC}
    title = ("Table 3: baseline and best configuration on the test set, mean ± std over seeds; the best's test "
             "accuracy against the baseline's, seed-paired")  # fmt: skip
    return Table("table3", title, pd.DataFrame(rows), fmts)


@section(STUDY, "table4", "accuracy, precision, recall and F1 of baseline and best")
def table4(r: StudyRuns) -> Table:
    rows = [{"model": label, "accuracy": cell(g, "metrics.test_acc"),
             **{f"{m} (macro)": cell(g, f"metrics.test_{k}_macro")
                for m, k in (("precision", "precision"), ("recall", "recall"), ("F1", "f1"))},
             "runs": select.run_ids(g)} for label, g in _pair(r)]  # fmt: skip
    frame = pd.DataFrame(rows)
    title = "Table 4: test accuracy and macro-averaged precision, recall and F1 of baseline and best"
    return Table("table4", title, frame, {c: ACC for c in frame.columns if c not in ("model", "runs")})


def _confusion(r: StudyRuns, label: str, g: pd.DataFrame, number: int) -> Figure:
    from raysweep.plots import confusion_figure

    rep = _rep(r, g)
    cm = json_artifact(r.tracking_uri, rep["run_id"], "confusion_matrix.json")
    if not cm:
        raise Skip(f"{STUDY}: the {label} run {rep['run_id']} has no confusion_matrix.json")
    acc = float(rep.get("metrics.test_acc", math.nan))
    fig = confusion_figure(np.asarray(cm["matrix"]), tuple(cm["classes"]), acc)
    title = f"Figure {number}: confusion matrix of the {label} ({_describe(g)}; run {rep['run_id']})"
    return Figure(f"figure{number}", title, fig, [rep["run_id"]])


@section(STUDY, "figure1", "confusion matrix, baseline")
def figure1(r: StudyRuns) -> Figure:
    return _confusion(r, "baseline", baseline(r), 1)


@section(STUDY, "figure2", "confusion matrix, best")
def figure2(r: StudyRuns) -> Figure:
    return _confusion(r, "best configuration", best(r), 2)


@section(STUDY, "figure3", "loss and accuracy curves of the best")
def figure3(r: StudyRuns) -> Figure:
    rep = _rep(r, best(r))
    h = histories(r.tracking_uri, rep["run_id"], ["train_loss", "val_loss", "train_acc", "val_acc"], r.cache)
    if not h:
        raise Skip(f"{STUDY}: the best run {rep['run_id']} logged no per-epoch metrics")
    fig, axes = subplots(1, 2)
    plot_curves(axes[0][0], {k: v for k, v in h.items() if k.endswith("loss")}, "cross-entropy loss")
    plot_curves(axes[0][1], {k: v for k, v in h.items() if k.endswith("acc")}, "accuracy")
    return Figure("figure3", f"Figure 3: training and validation curves of the best (run {rep['run_id']})",
                  fig, [rep["run_id"]])  # fmt: skip


@section(STUDY, "figure4", "feature maps of the best model")
def figure4(r: StudyRuns) -> Figure:
    rep = _rep(r, best(r))
    run_id = rep["run_id"]
    spec = json_artifact(r.tracking_uri, run_id, "model/spec.json")
    weights = download(r.tracking_uri, run_id, "model/best.pt")
    if not spec or weights is None:
        raise Skip(f"{STUDY}: the best run {run_id} has no model/best.pt + model/spec.json artifacts")
    import torch

    from raysweep.data.augment import to_float
    from raysweep.data.cifar10 import CLASSES, MEAN, STD, load_cifar10
    from raysweep.data.errors import DataError
    from raysweep.models import build_model

    model = build_model(spec["name"], **spec["config"])
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    try:
        test = load_cifar10(rep.get("params.data"), "test")
    except DataError as exc:
        raise Skip(f"{STUDY}: feature maps need the test images of {rep.get('params.data')!r}: {exc}") from None
    labels = np.asarray(test.labels)
    idx = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:FEATURE_IMAGES]]
    images = np.asarray(test.images[idx])  # (n, H, W, 3) uint8
    layers = [n for n in FEATURE_LAYERS if hasattr(model.features, n)]
    maps: dict[str, torch.Tensor] = {}
    hooks = [model.conv_layer(n).register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o.detach()))
             for n in layers]  # fmt: skip
    with torch.no_grad():
        model(to_float(torch.from_numpy(images), MEAN, STD))
    for h in hooks:
        h.remove()
    fig, axes = subplots(len(idx), 1 + len(layers) * FEATURE_CHANNELS, size=(1.25, 1.35))
    for row, ax_row in enumerate(axes):
        ax_row[0].imshow(images[row])
        label = int(labels[idx[row]])
        ax_row[0].set_title(CLASSES[label] if label < len(CLASSES) else f"class {label}", fontsize=7)
        for j, n in enumerate(layers):
            fmap = maps[n][row]  # (C, h, w)
            top = fmap.mean(dim=(1, 2)).argsort(descending=True)[:FEATURE_CHANNELS]
            for k, ch in enumerate(top.tolist()):
                ax = ax_row[1 + j * FEATURE_CHANNELS + k]
                ax.imshow(fmap[ch].numpy(), cmap="viridis")
                ax.set_title(f"{n} ch{ch}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    title = (f"Figure 4: feature maps of {', '.join(layers)} (the {FEATURE_CHANNELS} most active channels) "
             f"for {len(idx)} test images, best model (run {run_id})")  # fmt: skip
    return Figure("figure4", title, fig, [run_id])


@section(STUDY, "figure5", "baseline against best curves")
def figure5(r: StudyRuns) -> Figure:
    fig, axes = subplots(1, 2)
    ids = []
    for (label, g), color in zip(_pair(r), ("tab:blue", "tab:orange"), strict=True):
        rep = _rep(r, g)
        ids.append(rep["run_id"])
        h = histories(r.tracking_uri, rep["run_id"], ["train_loss", "val_loss", "train_acc", "val_acc"], r.cache)
        for ax, kind in zip(axes[0], ("loss", "acc"), strict=True):
            plot_curves(ax, {f"{label} {k.split('_')[0]} ({short(rep['run_id'])})": v
                             for k, v in h.items() if k.endswith(kind)}, kind, color)  # fmt: skip
    if not any(ax.lines for ax in axes[0]):
        raise Skip(f"{STUDY}: baseline and best runs logged no per-epoch metrics")
    return Figure("figure5", "Figure 5: baseline against best, training (dashed) and validation curves", fig, ids)
