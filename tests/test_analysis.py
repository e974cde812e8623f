"""Analysis: MLflow runs with known numbers -> DataFrame -> tables (checked cell by cell) and figures."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from raysweep import cli, tracking
from raysweep.analysis import char_rnn, cnn, generic, load_runs, pixel
from raysweep.analysis.registry import Image, Skip, Text
from raysweep.analysis.report import build_report, study_runs
from raysweep.analysis.tables import Stat, to_csv, to_latex, to_markdown

C3 = ("airplane", "cat", "dog")
BASE = {"lr": 0.001, "batch_size": 64, "filters": 32, "layers": 5}


def _sweep(uri: str, exp: str, study: str, name: str, **params) -> tracking.TrackingInfo:
    return tracking.start_sweep_run(uri, exp, name, params={"study": study, **params},
                                    tags={"raysweep.study": study, "raysweep.sweep_name": name})  # fmt: skip


def _trial(info, study: str, config: dict, curves: dict, final: dict | None = None, tags: dict | None = None,
           outcome: str = "completed", status: str = "FINISHED", artifacts: dict | None = None) -> str:  # fmt: skip
    """A trial run as the training loop writes it: params, metrics per epoch (step = epoch), final ones."""
    key = tracking.trial_key(study, "synthetic", config)
    log = tracking.open_trial_run(info, f"{study}_{key[:6]}", key, {"raysweep.study": study, **(tags or {})})
    n = max((len(v) for v in curves.values()), default=0)
    log.log_params({**config, "epochs": 3, "data": "synthetic", "device": "cpu"})
    for e in range(n):
        log.log_metrics({k: v[e] for k, v in curves.items() if e < len(v)}, step=e + 1)
    if final:
        log.log_metrics(final, step=max(n, 1))
    for path, obj in (artifacts or {}).items():
        log.log_text(obj, path) if isinstance(obj, str) else log.log_dict(obj, path)
    log.set_tags({tracking.OUTCOME_TAG: outcome})
    log.end(status)
    return log.run_id


def _cnn_final(acc: float, cat_p: float, **extra: float) -> dict:
    out = {"test_acc": acc, "test_loss": 1 - acc, "num_params": extra.pop("num_params", 141034)}
    for c in C3:
        for m in ("precision", "recall", "f1"):
            out[f"test_{m}_{c}"] = cat_p if (c, m) == ("cat", "precision") else acc
    for avg in ("macro", "weighted"):
        for m in ("precision", "recall", "f1"):
            out[f"test_{m}_{avg}"] = acc + (0.01 if m == "precision" else 0.0)
    return out | extra


def _report_json(acc: float) -> dict:
    rows = {c: 100 for c in C3} | {"macro avg": 300, "weighted avg": 300}
    rep = {k: {"precision": acc, "recall": acc, "f1-score": acc, "support": n} for k, n in rows.items()}
    return {"classes": list(C3), "report": rep}


def _cm(diag: int) -> dict:
    m = np.full((3, 3), (100 - diag) // 2)
    np.fill_diagonal(m, diag)
    return {"classes": list(C3), "matrix": m.tolist()}


@pytest.fixture
def cnn_store(tracking_uri: str) -> dict:
    """A staged CNN ablation with 2 seeds: stage 0 baseline, stage 1 lr 0.01 (winner) and 0.1 (diverged)."""
    info = _sweep(tracking_uri, "abl", "cnn", "cnn-abl", metric="val_acc")
    ids: dict[str, list[str]] = {"base": [], "lr01": [], "lr1": []}
    s0 = {"raysweep.stage": 0, "raysweep.stage_param": "baseline"}
    s1 = {"raysweep.stage": 1, "raysweep.stage_param": "lr"}
    losses = {"train_loss": [1.5, 1.0, 0.8], "val_loss": [1.4, 1.1, 1.2]}
    # seed, train_acc and val_acc per epoch (best epoch 2), test accuracy
    for seed, tr, va, acc in ((0, [0.5, 0.68, 0.75], [0.5, 0.70, 0.60], 0.70),
                              (1, [0.52, 0.70, 0.77], [0.55, 0.72, 0.70], 0.72)):  # fmt: skip
        ids["base"].append(_trial(info, "cnn", {**BASE, "seed": seed}, {"train_acc": tr, "val_acc": va, **losses},
                                  _cnn_final(acc, 0.6, best_epoch=2), s0,
                                  artifacts={"confusion_matrix.json": _cm(60 + seed)}))  # fmt: skip
    # lr 0.01: best epoch 3; the cat precision differs between the seeds
    for seed, tr, va, acc, cat in ((0, [0.6, 0.8, 0.85], [0.6, 0.8, 0.81], 0.80, 0.9),
                                   (1, [0.6, 0.8, 0.87], [0.6, 0.79, 0.83], 0.84, 0.8)):  # fmt: skip
        ids["lr01"].append(_trial(info, "cnn", {**BASE, "lr": 0.01, "seed": seed},
                                  {"train_acc": tr, "val_acc": va, **losses}, _cnn_final(acc, cat, best_epoch=3), s1,
                                  artifacts={"confusion_matrix.json": _cm(80 + seed),
                                             "classification_report.json": _report_json(acc)}))  # fmt: skip
    ids["lr1"].append(_trial(info, "cnn", {**BASE, "lr": 0.1, "seed": 0}, {"val_acc": [0.1]}, None, s1,
                             outcome="diverged", status="FAILED"))  # fmt: skip
    tracking.RunLogger(tracking_uri, info.parent_run_id).log_params({"stage1_lr_winner": 0.01})
    tracking.RunLogger(tracking_uri, info.parent_run_id).end()
    return {"uri": tracking_uri, "exp": "abl", "ids": ids, "sweep": info.parent_run_id}


def test_load_runs_one_typed_row_per_trial_with_values_at_the_best_epoch(cnn_store) -> None:
    df = load_runs("abl", cnn_store["uri"])
    assert len(df) == 5 and set(df["run_id"]) == {i for v in cnn_store["ids"].values() for i in v}
    assert {"run_id", "run_name", "status", "outcome", "study", "sweep_run_id", "sweep_name", "stage",
            "stage_param"} <= set(df.columns)  # fmt: skip
    row = df[df["run_id"] == cnn_store["ids"]["base"][0]].iloc[0]
    assert row["params.lr"] == 0.001 and row["params.batch_size"] == 64 and row["params.data"] == "synthetic"
    assert isinstance(row["params.batch_size"], (int, np.integer))
    assert row["best.val_acc"] == 0.70 and row["best.train_acc"] == 0.68  # epoch 2, not the last (0.60/0.75)
    assert row["metrics.val_acc"] == 0.60 and row["metrics.test_acc"] == 0.70
    assert row["stage"] == 0 and row["stage_param"] == "baseline" and row["sweep_name"] == "cnn-abl"
    assert row["sweep_run_id"] == cnn_store["sweep"] and row["study"] == "cnn"
    bad = df[df["run_id"] == cnn_store["ids"]["lr1"][0]].iloc[0]
    assert bad["status"] == "FAILED" and bad["outcome"] == "diverged"


def test_cnn_tables_have_the_known_numbers_with_mean_std_over_seeds(cnn_store) -> None:
    r = study_runs("abl", cnn_store["uri"])["cnn"]
    ids = cnn_store["ids"]
    t2 = cnn.table2(r)
    f = t2.frame
    assert list(f["stage"]) == [0, 1, 1] and list(f["parameter"]) == ["baseline", "lr", "lr"]
    assert list(f["lr"]) == [0.001, 0.01, 0.1] and list(f["winner"]) == ["", "yes", ""]
    assert f["train acc"][0] == Stat((0.68, 0.70)) and f["val acc"][1] == Stat((0.81, 0.83))
    assert f["val acc"][2] == 0.1 and list(f["outcome"]) == ["completed", "completed", "diverged"]
    md = to_markdown(t2)
    assert "0.6900 ± 0.0141 (n=2)" in md and "0.8200 ± 0.0141 (n=2)" in md
    assert f["runs"][1] == " ".join(ids["lr01"]) and f["runs"][2] == ids["lr1"][0]

    t1 = cnn.table1(r).frame.set_index("class")
    assert list(t1.index) == [*C3, "accuracy", "macro avg", "weighted avg"]
    assert t1.loc["cat", "precision"] == Stat((0.9, 0.8)) and t1.loc["cat", "support"] == 100
    assert t1.loc["accuracy", "f1-score"] == Stat((0.80, 0.84)) and t1.loc["macro avg", "support"] == 300
    assert t1.loc["macro avg", "precision"] == Stat((0.81, 0.85))

    t3 = cnn.table3(r).frame.set_index("model")
    assert t3.loc["baseline", "lr"] == 0.001 and t3.loc["best", "lr"] == 0.01
    assert t3.loc["baseline", "test accuracy"] == Stat((0.70, 0.72)) and t3.loc["best", "parameters"] == 141034
    assert t3.loc["baseline", "runs"] == " ".join(ids["base"])
    t4 = cnn.table4(r)
    assert t4.frame.set_index("model").loc["best", "precision (macro)"] == Stat((0.81, 0.85))
    assert "macro" in t4.title
    latex, text = to_latex(t4), to_csv(t4)
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex and "(n=2)" in text
    assert next(csv.reader(text.splitlines())) == list(t4.frame.columns)


def test_report_writes_files_logs_a_report_run_and_skips_what_is_missing(cnn_store, tmp_path) -> None:
    lines: list[str] = []
    res = build_report("abl", cnn_store["uri"], tmp_path / "rep", say=lines.append)
    assert not res.failed, res.failed
    names = {p.relative_to(res.out).as_posix() for p in res.files}
    for t in ("table1", "table2", "table3", "table4", "trials"):
        assert {f"tables/cnn_{t}.{e}" for e in ("md", "csv", "tex")} <= names
    assert {f"figures/cnn_figure{i}.png" for i in (1, 2, 3, 5)} | {"figures/cnn_hparams.png", "report.md"} <= names
    text = res.report_md.read_text()
    assert text.index("Table 1") < text.index("Table 2") < text.index("Figure 1") < text.index("Figure 5")
    assert "![" in text and "(figures/cnn_figure3.png)" in text
    skipped = "\n".join(res.skipped)
    assert "char_rnn" not in skipped and "pixel" not in skipped  # a one-study experiment: no other study listed
    assert len(res.skipped) == len(set(res.skipped)) == len({s.split(" [skips")[0] for s in res.skipped})
    assert "model/best.pt" in skipped  # no weights logged here: feature maps skipped with one line
    assert "figures/cnn_importance.png" in names  # 4 finished trials: just enough for fANOVA
    for png in (res.out / "figures").glob("*.png"):
        img = _png(png)
        assert png.stat().st_size > 5000 and img.std() > 0.05, png.name
    c = tracking.client(cnn_store["uri"])
    run = c.get_run(res.run_id)
    assert run.data.tags[tracking.KIND_TAG] == "report" and run.info.status == "FINISHED"
    logged = {a.path for a in c.list_artifacts(res.run_id, "tables")} | {a.path for a in c.list_artifacts(res.run_id)}
    assert {"report.md", "tables/cnn_table2.csv", "figures"} <= logged
    assert len(load_runs("abl", cnn_store["uri"])) == 5  # the report run is not a trial
    assert any(line.startswith("skipped: ") for line in lines)


def _png(path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)[..., :3]


def test_generic_importance_finds_the_parameter_that_matters(tracking_uri) -> None:
    info = _sweep(tracking_uri, "imp", "cnn", "cnn-rand")
    for i, (lr, bs) in enumerate((lr, bs) for lr in (1e-4, 1e-3, 3e-3, 1e-2, 1e-1) for bs in (16, 64)):
        score = 0.9 - 0.1 * abs(math.log10(lr) + 2.5) + 0.001 * (i % 3)  # lr matters, batch size does not
        _trial(info, "cnn", {**BASE, "lr": lr, "batch_size": bs, "seed": i}, {"val_acc": [score - 0.1, score]})
    r = study_runs("imp", tracking_uri)["cnn"]
    imp = generic.importances(r.runs, r.metric, r.mode)
    assert set(imp) == {"lr", "batch_size"} and imp["lr"] > 0.9 > 0.1 > imp["batch_size"], imp
    assert generic.importance_figure(r).name == "importance"
    with pytest.raises(Skip, match="needs >= 4 finished trials"):
        generic.importances(r.runs.iloc[:3], r.metric, r.mode)


def test_char_rnn_tables_split_leak_and_hidden_ablation(tracking_uri, tmp_path) -> None:
    info = _sweep(tracking_uri, "rnn", "char_rnn", "rnn-1", metric="val_loss")
    ids = {}
    for split, h, tr_acc, va_acc, leak in (("random", 256, 0.90, 0.85, 0.93), ("temporal", 256, 0.60, 0.52, 0.0),
                                           ("temporal", 512, 0.64, 0.54, 0.0)):  # fmt: skip
        curves = {"train_acc": [tr_acc - 0.1, tr_acc], "val_acc": [va_acc - 0.1, va_acc],
                  "train_loss": [1.6, 1.3], "val_loss": [1.7, 1.5 - h / 10000],
                  "train_ppl": [5.0, 3.7], "val_ppl": [5.5, 4.5 - va_acc],
                  "val_bpc": [2.4, 2.0 - h / 10000 - (0.5 if split == "random" else 0.0)]}  # leaky: lowest  # fmt: skip
        ids[(split, h)] = _trial(info, "char_rnn", {"hidden_size": h, "split": split, "num_layers": 1, "seed": 0},
                                 curves, {"leak_ngram32": leak, "num_params": h * 1000, "test_loss": 1.5},
                                 artifacts={"generated.txt": f"To be or not to be, h{h} {split}"})  # fmt: skip
    r = study_runs("rnn", tracking_uri)["char_rnn"]
    assert (r.metric, r.mode) == ("val_bpc", "min")  # one unit for every tokenizer
    t5 = char_rnn.table5(r).frame.set_index("split")
    assert t5.loc["random", "val windows leaking 32-grams"] == 0.93
    assert t5.loc["temporal", "val windows leaking 32-grams"] == 0.0
    assert t5.loc["random", "val acc"] == 0.85 and t5.loc["temporal", "train acc"] == 0.60
    assert t5.loc["random", "runs"] == ids[("random", 256)]
    t6 = char_rnn.table6(r).frame
    assert list(t6["hidden size"]) == [256, 512] and list(t6["parameters"]) == [256000, 512000]
    assert t6["val ppl"][1] == pytest.approx(4.5 - 0.54) and t6["runs"][1] == ids[("temporal", 512)]
    text = char_rnn.generated(r)
    assert isinstance(text, Text) and text.body == "To be or not to be, h512 temporal"  # the leaky one never wins
    trials = generic.trials_table(r).frame
    assert list(trials["split"]) == ["temporal", "temporal", "random"]  # leaky last, though its val_bpc is lowest
    assert list(trials["ranked"]) == ["yes", "yes", "no (leaky)"] and trials["leak_ngram32"].iloc[-1] == 0.93
    res = build_report("rnn", tracking_uri, tmp_path / "rep", say=lambda s: None)
    assert not res.failed, res.failed
    assert {"char_rnn_table5.csv", "char_rnn_table6.tex", "char_rnn_figure6.png", "char_rnn_generated.txt",
            "char_rnn_hparams.png"} <= {p.name for p in res.files}  # fmt: skip
    assert "To be or not to be, h512 temporal" in res.report_md.read_text()
    assert "cnn" not in "\n".join(res.skipped)


def test_pixel_table_ranks_models_by_val_bits_per_dim(tracking_uri, tmp_path) -> None:
    import matplotlib.image

    info = _sweep(tracking_uri, "px", "pixel", "px-1", metric="val_bpd")
    png = tmp_path / "samples.png"
    matplotlib.image.imsave(png, np.random.default_rng(0).random((16, 16, 3)))
    for model, val in (("pixelcnn", 4.2), ("row_lstm", 3.9), ("diagonal_bilstm", 3.7)):
        rid = _trial(info, "pixel", {"model": model, "layers": 2, "hidden": 16, "seed": 0},
                     {"train_bpd": [val + 0.5, val + 0.1], "val_bpd": [val + 0.4, val]}, {"lossless_bpd": val - 1})
        tracking.RunLogger(tracking_uri, rid).log_file(png)
    r = study_runs("px", tracking_uri)["pixel"]
    (t7,) = (t.frame for t in pixel.table7(r))
    assert list(t7["model"]) == ["Diagonal BiLSTM", "Row LSTM", "PixelCNN"] and list(t7["rank"]) == [1, 2, 3]
    assert list(t7["val bits/dim"]) == [3.7, 3.9, 4.2] and t7["lossless-subset bits/dim"][0] == pytest.approx(2.7)
    imgs = pixel.samples(r)
    assert len(imgs) == 3 and all(isinstance(i, Image) and i.path.exists() for i in imgs)
    res = build_report("px", tracking_uri, tmp_path / "rep", say=lambda s: None)
    assert not res.failed, res.failed
    assert {"pixel_table7.md", "pixel_figure7.png", "pixel_samples_row_lstm.png", "pixel_hparams.png"} <= {
        p.name for p in res.files}  # fmt: skip


def test_pixel_tables_never_rank_across_image_sizes(tracking_uri, tmp_path) -> None:
    info = _sweep(tracking_uri, "px2", "pixel", "px-2", metric="val_bpd")
    for model, size, val in (("pixelcnn", 32, 3.4), ("row_lstm", 32, 3.2), ("pixelcnn", 8, 1.9), ("row_lstm", 8, 2.1)):
        _trial(info, "pixel", {"model": model, "layers": 2, "hidden": 16, "image_size": size, "seed": 0},
               {"train_bpd": [val + 0.5, val + 0.1], "val_bpd": [val + 0.4, val]}, {"lossless_bpd": val})
    tables = pixel.table7(study_runs("px2", tracking_uri)["pixel"])
    assert [t.name for t in tables] == ["table7_32x32", "table7_8x8"]
    assert "32x32 images" in tables[0].title and "8x8 images" in tables[1].title
    big, small = (t.frame for t in tables)
    assert list(big["model"]) == ["Row LSTM", "PixelCNN"] and list(big["val bits/dim"]) == [3.2, 3.4]
    assert list(small["model"]) == ["PixelCNN", "Row LSTM"] and list(small["rank"]) == [1, 2]
    res = build_report("px2", tracking_uri, tmp_path / "rep", say=lambda s: None)
    assert {"pixel_table7_32x32.md", "pixel_table7_8x8.md", "pixel_figure7_8x8.png"} <= {p.name for p in res.files}


def test_missing_metrics_are_reported_not_a_traceback(tracking_uri, tmp_path, capsys) -> None:
    info = _sweep(tracking_uri, "gaps", "cnn", "cnn-gaps")
    _trial(info, "cnn", {**BASE, "seed": 0}, {}, status="KILLED", outcome="interrupted")
    _trial(info, "cnn", {**BASE, "seed": 1}, {"train_loss": [1.0]}, status="KILLED", outcome="interrupted")
    code = cli.main(["report", "--experiment", "gaps", "--tracking-uri", tracking_uri, "--out", str(tmp_path / "g")])
    out = capsys.readouterr().out
    assert code == 0 and "Traceback" not in out
    assert "2 of 2 trial runs have no val_acc" in out and "no trial has a finite val_acc" in out


@pytest.mark.parametrize("setup, message", [
    ("none", "no experiment 'nope' at"),
    ("empty", "experiment 'nope' has no trial runs"),
    ("nostore", "no MLflow store at"),
])  # fmt: skip
def test_unknown_or_empty_experiment_is_one_line_and_exit_2(setup, message, tracking_uri, tmp_path, capsys) -> None:
    uri = tracking_uri
    if setup == "empty":
        tracking.ensure_experiment(uri, "nope")
    elif setup == "none":
        tracking.ensure_experiment(uri, "other")
    else:
        uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    assert cli.main(["report", "--experiment", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("raysweep: error:") and message in err[0]
    if setup == "none":
        assert "'other'" in err[0]


def test_end_to_end_sweep_report_has_every_cnn_table_and_feature_maps(reported_sweep) -> None:
    rs = reported_sweep
    assert rs["code"] == 0, rs["stdout"]
    out = rs["out"]
    for t in ("table1", "table2", "table3", "table4", "trials"):  # each in its three formats, with rows
        header, *body = list(csv.reader((out / "tables" / f"cnn_{t}.csv").open()))
        assert len(header) >= 2 and len(body) >= 1 and all(len(r) == len(header) for r in body), t
        assert "|---" in (out / "tables" / f"cnn_{t}.md").read_text().replace(" ", ""), t
        assert "\\begin{tabular}" in (out / "tables" / f"cnn_{t}.tex").read_text(), t
    for f in ("figure1", "figure2", "figure3", "figure4", "figure5", "hparams", "curves"):
        img = _png(out / "figures" / f"cnn_{f}.png")
        assert img.std() > 0.05 and img.shape[0] > 200, f
    rows = list(csv.DictReader((out / "tables" / "cnn_table2.csv").open()))
    assert [(r["stage"], r["parameter"], r["lr"]) for r in rows] == [("0", "baseline", "0.001"), ("1", "lr", "0.01")]
    trials = {t["run_id"] for t in rs["result"].trials}
    assert {r["runs"] for r in rows} == trials
    assert trials <= set((out / "tables" / "cnn_trials.csv").read_text().replace(",", " ").split())
    assert "report:" in rs["stdout"] and "logged as MLflow run" in rs["stdout"]
    assert "importance needs >= 4 finished trials" in rs["stdout"]


def test_ui_command_binds_localhost_serves_raysweeps_artifacts_and_refuses_a_busy_port(tracking_uri, capsys) -> None:
    import socket

    from raysweep import ui

    cmd = ui.server_command(tracking_uri, 5123)
    root = tracking.artifact_root(tracking_uri)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--backend-store-uri") + 1] == tracking_uri
    assert cmd[cmd.index("--default-artifact-root") + 1] == root == cmd[cmd.index("--artifacts-destination") + 1]
    assert tracking.runs_link("http://h:1", "7") == "http://h:1/#/experiments/7/runs?workflowType=machine_learning"
    tracking.ensure_experiment(tracking_uri, "x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert cli.main(["ui", "--tracking-uri", tracking_uri, "--port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use; pass another --port" in err[0]
    assert cli.main(["ui", "--tracking-uri", tracking_uri.replace("mlflow.db", "none/mlflow.db")]) == 2
    assert "no MLflow store at" in capsys.readouterr().err


def test_cells_over_seeds_say_mean_std_and_n_even_when_the_seeds_agree() -> None:
    import pandas as pd

    from raysweep.analysis.tables import Table, cell

    g = pd.DataFrame({"params.lr": [0.01, 0.01], "metrics.num_params": [10, 10], "metrics.test_acc": [0.2, 0.2],
                      "best.val_acc": [0.5, 0.7], "metrics.test_loss": [1.0, float("nan")]})  # fmt: skip
    row = {c: cell(g, c) for c in g.columns}
    assert row["params.lr"] == 0.01 and row["metrics.num_params"] == 10 and row["metrics.test_loss"] == 1.0
    assert row["metrics.test_acc"] == Stat((0.2, 0.2)) and row["best.val_acc"].std == pytest.approx(0.1414, abs=1e-4)
    md = to_markdown(Table("t", "t", pd.DataFrame([row]), {"params.lr": "g"}))
    assert "| 0.01 | 10 | 0.2000 ± 0.0000 (n=2) | 0.6000 ± 0.1414 (n=2) | 1.0000 |" in md
