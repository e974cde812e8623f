"""The benchmark suite in smoke mode: every benchmark runs tiny, so none of them rots.

Never a timing test: it checks that the results files are written with the named figures, finite
and positive, not how fast anything is.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMED = ["sweep_overhead_ratio", "input_pipeline_speedup", "input_pipeline_ceiling", "data_time_fraction",
         "cnn_test_acc_30min_cpu", "cnn_test_acc_10min_cpu", "cnn_epoch_s_baseline", "cnn_epoch_s_optimized",
         "driver_mb_per_trial", "short_trials_vs_optuna_ratio", "dry_run_estimate_ratio",
         "gpu_path_images_per_s_fp32", "gpu_path_images_per_s_bf16", "gpu_path_images_per_s_bf16_compile"]  # fmt: skip
MEASURED_OR_SKIPPED = ["pixel_pixelcnn_images_per_s", "pixel_row_lstm_images_per_s",
                       "pixel_diagonal_bilstm_images_per_s", "char_lstm_chars_per_s"]  # fmt: skip
NAMED += ["char_lstm_train_chars_per_s", "char_val_loss_10min_cpu",  # benchmarks/char_rnn.py
          *(f"pixel_{m}_{k}" for m in ("pixelcnn", "row_lstm", "diagonal_bilstm")
            for k in ("paper_images_per_s", "lossless_bpd_budget"))]  # benchmarks/pixel.py  # fmt: skip
NAMED += ["report_s_1000_trials", "sweep_overhead_s_per_short_trial",  # benchmarks/report_1000.py
          "report_s_10000_runs", "report_10000_load_s"]  # benchmarks/report_10000.py


def test_no_two_benchmarks_declare_one_figure_name(monkeypatch) -> None:
    import pytest

    from benchmarks import run

    run.check_figure_names()  # raises SystemExit naming both owners on a clash
    assert {"char_rnn", "pixel", "dry_run"} <= set(run.BENCHMARKS)
    monkeypatch.setitem(run.BENCHMARKS, "copy", run.BENCHMARKS["pixel"])  # a second module declaring pixel's
    with pytest.raises(SystemExit, match="is declared by both pixel and copy"):
        run.check_figure_names()


def test_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    before = _mtime(REPO / "benchmarks" / "results.json")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "BENCHMARKS.md").read_text().startswith("# Benchmarks")
    assert {"machine", "date", "commit", "figures", "benchmarks"} <= set(results)
    assert all(b["status"] == "ok" and b["mode"] == "smoke" for b in results["benchmarks"].values())
    figures = results["figures"]
    for key in NAMED:
        assert key in figures, f"{key} missing from {sorted(figures)}"
        f = figures[key]
        assert f["min"] <= f["median"] <= f["max"]
        assert math.isfinite(f["median"]) and f["median"] > 0, (key, f)
    for key in MEASURED_OR_SKIPPED:  # models written elsewhere: measured once registered
        assert key in figures or key in results["skipped"], key
        if key in figures:
            assert math.isfinite(figures[key]["median"]) and figures[key]["median"] > 0
    for key, f in figures.items():
        assert all(v is None or math.isfinite(v) for v in (f["min"], f["median"], f["max"])), key
    assert _mtime(REPO / "benchmarks" / "results.json") == before  # the repository's results untouched


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def test_a_gpu_run_sits_beside_the_cpu_run_and_names_its_machine(tmp_path: Path) -> None:
    from benchmarks.run import keyed, merge, render_markdown

    def figure(v: float) -> dict:
        return {"min": v, "median": v, "max": v, "mean": v, "std": 0.0, "runs": [v]}

    laptop, h200 = {"hostname": "laptop", "gpu": None, "cpu": "Xeon"}, {"hostname": "vm", "gpu": "NVIDIA H200"}
    path = tmp_path / "results.json"
    cpu = {"device": "cpu", "machine": laptop, "figures": {"cnn_test_acc_30min_cpu": figure(0.88)}}
    path.write_text(json.dumps(merge(path, False, {keyed("time_to_accuracy", "cpu"): cpu}, {"machine": laptop})))
    gpu = {"device": "cuda", "machine": h200, "figures": {"cnn_test_acc_5min_cuda": figure(0.91)}}
    pixel = {"device": "cpu", "machine": laptop, "figures": {}}
    results = merge(path, False, {keyed("time_to_accuracy", "cuda"): gpu, "pixel": pixel}, {"machine": laptop})
    assert list(results["benchmarks"]) == ["pixel", "time_to_accuracy", "time_to_accuracy_cuda"]
    assert set(results["figures"]) == {"cnn_test_acc_30min_cpu", "cnn_test_acc_5min_cuda"}
    md = render_markdown(results)
    cpu_section, gpu_section = md.split("## time_to_accuracy")[1:]
    assert "NVIDIA H200" in gpu_section and "another machine" not in cpu_section


def test_the_table_keeps_the_digit_that_decides_a_target() -> None:
    from benchmarks.run import _fmt

    assert _fmt(1.105) == "1.105"  # against sweep_overhead_ratio <= 1.10: not "1.1"
    assert _fmt(0.8991) == "0.8991" and _fmt(1.4326) == "1.433"
    assert _fmt(2435.16) == "2,435" and _fmt(98.03) == "98.0" and _fmt(None) == "–"


def test_an_entry_is_dirty_when_code_changed_not_when_the_suite_wrote_its_results(tmp_path: Path, monkeypatch) -> None:
    from benchmarks import common

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    for rel in ("code.py", *common.OUTPUTS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("0\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(common, "REPO", tmp_path)
    for rel in common.OUTPUTS:  # what every benchmark of a suite run writes when it ends
        (tmp_path / rel).write_text("1\n")
    commit, dirty = common.git_commit()
    assert len(commit) == 40 and not dirty
    (tmp_path / "code.py").write_text("1\n")
    assert common.git_commit() == (commit, True)


def test_char_rnn_run_fills_its_budget_with_one_pass_epochs_on_a_fast_machine() -> None:
    from benchmarks.char_rnn import EPOCHS, size_run

    # slow machine (2026-12-03, AMD): ten epochs shorter than one pass, validation ~1 % of the budget
    epochs, tokens = size_run(600.0, 6.0, 20_000.0, 2_000_000)
    assert epochs == EPOCHS and tokens == 1_080_000
    # fast machine (2026-12-04, Xeon): ten epochs would each need 3.6M tokens, more than a pass
    epochs, tokens = size_run(600.0, 2.0, 62_000.0, 2_000_000)
    assert tokens == 2_000_000 and epochs == 17
    assert epochs * (2.0 + tokens / 62_000.0) <= 600.0 < (epochs + 1) * (2.0 + tokens / 62_000.0)
