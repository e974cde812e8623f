"""The source report against our runs: every verdict kind on fake runs built for it, the packaged
reference file, and the report section it writes."""

from __future__ import annotations

import copy
import csv

import pandas as pd
import pytest
import test_analysis

from raysweep.analysis import against as vs
from raysweep.analysis.errors import AnalysisError

cnn_store = test_analysis.cnn_store  # a recorded staged ablation (2 seeds), reused as a fixture
REAL = {"data": "/work/shared/data/cifar10", "epochs": 20}
BASE = {"lr": 0.001, "batch_size": 64, "filters": 32, "layers": 5}


def _runs(rows: list[tuple[dict, dict]]) -> pd.DataFrame:
    """A runs DataFrame (load_runs columns) from (params, measured columns) pairs, one row per run."""
    out = []
    for i, (params, measured) in enumerate(rows):
        out.append({"run_id": f"run{i:02d}", "status": "FINISHED", "outcome": "completed",
                    "start_time": pd.Timestamp(1_700_000_000 + i, unit="s", tz="UTC"),
                    **{f"params.{k}": v for k, v in params.items()}, **measured})  # fmt: skip
    return pd.DataFrame(out)


def _cnn(config: dict, seeds_vals: dict[int, float], col: str = "best.val_acc", **setup) -> list[tuple[dict, dict]]:
    return [({**REAL, **setup, **config, "seed": s}, {col: v}) for s, v in seeds_vals.items()]


@pytest.fixture(scope="module")
def ref() -> dict:
    return vs.load_reference("report")


def _claim(ref: dict, cid: str) -> dict:
    return next(c for c in ref["claims"] if c["id"] == cid)


def test_packaged_reference_holds_the_reports_tables_and_claims(ref: dict) -> None:
    cells = ref["by_id"]
    assert {c["table"] for c in ref["cells"]} == {f"Table {n}" for n in range(1, 8)}
    assert cells["T2.stage3.val_acc"]["value"] == 0.7531 and cells["T2.stage3.val_acc"]["config"]["batch_size"] == 16
    assert cells["T5.random.val_acc"]["value"] == 0.076  # 7.6% as a fraction
    assert cells["T7.diagonal_bilstm.val_bpd"]["value"] == 7.1786
    assert cells["T3.optimized.parameters"]["value"] == 2_332_106
    for c in ref["cells"]:  # each cell says what it measures
        assert {"table", "row", "column", "metric", "split", "mode", "ours"} <= set(c)
    ids = {c["id"] for c in ref["claims"]}
    assert {"A1", "A2", "A3", "A4", "A5", "K1", "K2", "K3", "K4"} <= ids
    assert ref["setups"]["Table 2"]["epochs"] == 20 and ref["setups"]["Table 7"]["image_size"] == 32


def test_holds_when_ours_goes_the_reports_way_beyond_seed_noise(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.720, 1: 0.725, 2: 0.722}) + _cnn({**BASE, "batch_size": 16}, {0: 0.750, 1: 0.756,
                                                                                               2: 0.751}))  # fmt: skip
    j = vs.judge_claim({"cnn": runs}, ref, _claim(ref, "K1"))
    assert j.verdict == "holds", j.reason
    assert "+0.0300" in j.reason and "+0.0275" in j.reason  # ours and the report's difference, from the data
    assert set(j.runs) == set(runs["run_id"])


def test_does_not_hold_when_ours_goes_the_other_way(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.760, 1: 0.765}) + _cnn({**BASE, "batch_size": 16}, {0: 0.730, 1: 0.736}))
    j = vs.judge_claim({"cnn": runs}, ref, _claim(ref, "K1"))
    assert j.verdict == "does not hold" and "worse" in j.reason and "-0.0295" in j.reason


def test_a_claimed_gain_within_seed_noise_does_not_hold(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.72, 1: 0.75}) + _cnn({**BASE, "batch_size": 16}, {0: 0.74, 1: 0.72}))
    j = vs.judge_claim({"cnn": runs}, ref, _claim(ref, "K1"))
    assert j.verdict == "does not hold" and "within seed noise" in j.reason


def test_a_different_winner_does_not_hold(ref: dict) -> None:
    """The report's pick of hidden 512 against ours, where 1024 wins beyond noise."""
    rows = [({"data": "tiny_shakespeare", "split": "temporal", "hidden_size": h, "seed": s}, {"best.val_acc": v})
            for h, vals in ((256, (0.50, 0.51)), (512, (0.52, 0.525)), (1024, (0.56, 0.565)))
            for s, v in enumerate(vals)]  # fmt: skip
    j = vs.judge_claim({"char_rnn": _runs(rows)}, ref, _claim(ref, "K6"))
    assert j.verdict == "does not hold" and "hidden_size=1024" in j.reason


def test_not_comparable_names_the_difference(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.60, 1: 0.61}, epochs=3))
    cell = vs.judge_cell(runs, ref, ref["by_id"]["T2.stage0.val_acc"])
    assert cell.verdict == "not comparable" and "epochs 3 (report: 20)" in cell.reason
    runs = _runs(_cnn(BASE, {0: 0.60, 1: 0.61}, data="synthetic")
                 + _cnn({**BASE, "batch_size": 16}, {0: 0.65, 1: 0.66}, data="synthetic"))
    claim = vs.judge_claim({"cnn": runs}, ref, _claim(ref, "K1"))
    assert claim.verdict == "not comparable" and "data" in claim.reason and "synthetic" in claim.reason


def test_inconsistent_in_the_report_for_a_leaky_split_scoring_lower(ref: dict) -> None:
    rows = [({"data": "tiny_shakespeare", "split": sp, "hidden_size": 512, "seed": s}, {"best.val_acc": v})
            for sp, vals in (("random", (0.66, 0.67)), ("temporal", (0.53, 0.535))) for s, v in enumerate(vals)]
    j = vs.judge_claim({"char_rnn": _runs(rows)}, ref, _claim(ref, "A4"))
    assert j.verdict == "inconsistent in the report"
    assert "7.6%" in j.reason and "53.4%" in j.reason and "ours:" in j.reason
    cell = vs.judge_cell(_runs(rows), ref, ref["by_id"]["T5.random.val_acc"])
    assert cell.verdict == "inconsistent in the report" and "0.6650" in cell.reason


def test_inconsistent_in_the_report_for_near_uniform_bits_per_dim(ref: dict) -> None:
    j = vs.judge_claim({}, ref, _claim(ref, "A5"))
    assert j.verdict == "inconsistent in the report"
    assert "7.18-7.90" in j.reason and "8.00" in j.reason and "3.00-3.14" in j.reason


def test_checks_fire_only_on_the_report_contradicting_itself(ref: dict) -> None:
    assert "0.7927" in vs.check(ref, "depth_direction") and "0.7964" in vs.check(ref, "depth_direction")
    fixed = copy.deepcopy(ref)
    fixed["by_id"]["T5.random.val_acc"]["value"] = 0.95  # a leak that raises val accuracy is consistent
    fixed["by_id"]["T2.stage11.val_acc"]["value"] = 0.80
    assert vs.check(fixed, "split_leak") == "" and vs.check(fixed, "depth_direction") == ""


def test_cannot_tell_with_one_seed_or_no_runs(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.72}) + _cnn({**BASE, "batch_size": 16}, {0: 0.75}))
    assert vs.judge_claim({"cnn": runs}, ref, _claim(ref, "K1")).verdict == "cannot tell"
    assert vs.judge_claim({}, ref, _claim(ref, "K2")).verdict == "cannot tell"


def test_a_level_cell_within_noise_of_the_report_holds(ref: dict) -> None:
    opt = {"lr": 0.001, "batch_size": 16, "filters": 64, "layers": 7}
    runs = _runs(_cnn(opt, {0: 0.889, 1: 0.895}, col="metrics.test_acc"))
    j = vs.judge_cell(runs, ref, ref["by_id"]["T3.optimized.test_acc"])
    assert j.verdict == "holds" and "0.8920 ± 0.0042 (n=2)" in j.ours and "within seed noise" in j.reason
    low = _runs(_cnn(opt, {0: 0.80, 1: 0.801}, col="metrics.test_acc"))
    assert vs.judge_cell(low, ref, ref["by_id"]["T3.optimized.test_acc"]).verdict == "does not hold"


def test_every_verdict_kind_reaches_the_tables(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.72, 1: 0.73}) + _cnn({**BASE, "batch_size": 16}, {0: 0.60, 1: 0.61}, epochs=3))
    tables = vs.cell_tables("cnn", runs, ref)
    t2 = tables["Table 2"].frame
    assert list(t2.columns) == vs.COLUMNS
    row = t2[(t2["row"] == "stage 0 (baseline)") & (t2["column"] == "Val Acc")].iloc[0]
    assert row["report"] == "0.7256" and row["verdict"] == "holds" and row["runs"] == "run00 run01"
    assert (t2[t2["row"] == "stage 3 (batch_size)"]["verdict"].iloc[1]) == "not comparable"
    table = vs.conclusions({"cnn": runs}, ref)
    assert len(table.frame) == len(ref["claims"]) and set(table.frame["verdict"]) <= set(vs.VERDICTS)


def test_departures_state_epochs_data_and_seeds(ref: dict) -> None:
    runs = _runs(_cnn(BASE, {0: 0.72, 1: 0.73}, epochs=3))
    line = vs.departures({"cnn": runs}, ref)[0]
    assert line.startswith("cnn (Table 1, Table 2, Table 3, Table 4)")
    assert "epochs 3 (report: 20)" in line and "data cifar10 (report: cifar10)" in line
    assert "seeds per configuration 2 (report: 1)" in line


def test_a_bad_reference_path_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(AnalysisError, match="no such file"):
        vs.load_reference(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"cells": []}')
    with pytest.raises(AnalysisError, match="lacks setups, claims"):
        vs.load_reference(str(bad))


def test_report_against_puts_each_tables_cells_beside_it_and_lists_the_claims(cnn_store, tmp_path) -> None:
    """``build_report(..., against="report")`` on a recorded staged ablation (2 seeds, synthetic data)."""
    from raysweep.analysis.report import build_report

    res = build_report("abl", cnn_store["uri"], tmp_path / "rep", say=lambda s: None, against="report")
    md = res.report_md.read_text()
    assert md.index("## Conclusions") < md.index("## cnn")
    assert "- cnn (Table 1, Table 2, Table 3, Table 4): data synthetic (report: cifar10); epochs 3 (report: 20)" in md
    t2 = md.index("### Table 2: staged ablation")
    assert t2 < md.index("### Table 2 against the source report") < md.index("### Table 3: baseline")
    assert "0.6900 ± 0.0141 (n=2)" in md  # ours beside the report's 0.7256 (stage 0 val acc at epoch 2)
    assert "[skips Figure 4" in md  # a skipped figure is named as the report numbers it
    with open(tmp_path / "rep" / "tables" / "report_conclusions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(vs.load_reference("report")["claims"])
    assert {r["verdict"] for r in rows} >= {"inconsistent in the report", "cannot tell"}
    with open(tmp_path / "rep" / "tables" / "cnn_against_table2.csv") as f:
        stage0 = next(r for r in csv.DictReader(f) if r["row"] == "stage 0 (baseline)" and r["column"] == "Val Acc")
    assert stage0["verdict"] == "not comparable" and "epochs 3 (report: 20)" in stage0["reason"]
    assert stage0["runs"] == " ".join(cnn_store["ids"]["base"])
