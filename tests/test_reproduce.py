"""``raysweep reproduce``: every study's report spaces end to end at the smoke scale, the report against
its source, resuming without rerunning, the summed dry run, and the figures and header a reader uses."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest

from raysweep import cli, reproduce, tracking
from raysweep.analysis import generic, report
from raysweep.analysis.against import VERDICTS, load_reference
from raysweep.text import plural


def _main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``raysweep reproduce --scale smoke`` once, on synthetic data."""
    root = tmp_path_factory.mktemp("reproduce")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    args = ("reproduce", "--scale", "smoke", "--tracking-uri", uri, "--storage-path", str(root / "ray"),
            "--out", str(root / "rep"))  # fmt: skip
    code, stdout = _main(*args)
    return {"uri": uri, "root": root, "code": code, "stdout": stdout, "args": args, "md": root / "rep" / "report.md"}


def test_smoke_runs_every_report_space_and_writes_the_report_against_its_source(smoke: dict) -> None:
    assert smoke["code"] == 0, smoke["stdout"][-3000:]
    md = smoke["md"].read_text()
    for s in reproduce.SCALES["smoke"].steps:  # every study's report spaces ran as a named sweep
        assert tracking.find_sweep_run(smoke["uri"], f"reproduce-smoke-{s.study}-{s.space}").info.status == "FINISHED"
    assert "Reproduction at scale `smoke`" in md and "synthetic data, one seed" in md  # how it departs
    assert "CPU cores" in md.split("Machine: ")[1].splitlines()[0]  # where it ran, and how long each sweep took
    walls = md.split("Wall time of the sweeps: ")[1].splitlines()[0]
    assert all(f"`reproduce-smoke-{s.study}-{s.space}` " in walls for s in reproduce.SCALES["smoke"].steps), walls
    assert "Where our runs depart from the report's setup" in md and "epochs 1 (report: 20)" in md
    assert "- `synthetic` (SHA-256 of its decoded content `" in md  # data source and hash, once at the top
    assert md.count("SHA-256 of its decoded content") == md.count("- `synthetic`") >= 1
    for n in range(1, 8):  # each table of the report sits beside ours
        assert f"Table {n} against the source report" in md
    assert md.index("Table 2 against the source report") > md.index("Table 2: staged ablation")
    with open(smoke["root"] / "rep" / "tables" / "report_conclusions.csv") as f:
        claims = list(csv.DictReader(f))
    assert [c["claim"] for c in claims] == [c["id"] for c in load_reference("report")["claims"]]
    verdicts = {c["claim"]: c["verdict"] for c in claims}
    assert set(verdicts.values()) <= set(VERDICTS)
    assert verdicts["K1"] == "not comparable" and verdicts["A5"] == "inconsistent in the report"
    k1 = next(c for c in claims if c["claim"] == "K1")
    assert "data synthetic (report: cifar10)" in k1["reason"] and k1["runs"]


def test_the_sweep_header_names_its_data(smoke: dict) -> None:
    assert "data: synthetic (SHA-256 " in smoke["stdout"]


def test_rerunning_reproduce_with_the_same_name_reruns_nothing(smoke: dict) -> None:
    c = tracking.client(smoke["uri"])
    exp = c.get_experiment_by_name("reproduce-smoke").experiment_id

    def trials() -> set[str]:
        return {r.info.run_id for r in c.search_runs([exp]) if r.data.tags.get(tracking.KIND_TAG) == "trial"}

    before = trials()
    code, stdout = _main(*smoke["args"])
    after = trials()
    assert code == 0 and after == before
    assert stdout.count("finished earlier; not run again") == len(reproduce.SCALES["smoke"].steps)


def test_curves_figure_has_a_legend_naming_each_lines_configuration(smoke: dict) -> None:
    ctx = report.study_runs("reproduce-smoke", smoke["uri"])["cnn"]
    fig = generic.curves_figure(ctx).fig
    _, labels = fig.axes[1].get_legend_handles_labels()  # the legend sits beside the right panel
    assert sorted(labels) == ["batch_size=16", "batch_size=64"]


def test_dry_run_sums_each_sweeps_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    import raysweep.sweep as sweep

    seen = []

    def fake(opts):
        seen.append(opts.name)
        return {"trials": 2, "to_run": 2, "total_s": 600.0}

    monkeypatch.setattr(sweep, "dry_run_sweep", fake)
    lines: list[str] = []
    assert reproduce.reproduce("cpu", dry_run=True, say=lines.append) == 0
    assert seen == [f"reproduce-cpu-{s.study}-{s.space}" for s in reproduce.SCALES["cpu"].steps]
    assert lines[0].startswith("reproduce --scale cpu: 4 sweeps, about 40.0 min in all")


def test_cpu_scale_has_two_seeds_for_every_headlined_comparison() -> None:
    steps = {(s.study, s.space): s for s in reproduce.SCALES["cpu"].steps}
    for key in (("cnn", "report_ablation"), ("char_rnn", "report_split"), ("char_rnn", "report_hidden")):
        assert steps[key].repeats >= 2
    epochs = plural(reproduce.CPU_CNN_EPOCHS, "epoch")  # the header says how far from the report's 20
    assert any(f"{epochs}, not 20" in d for d in reproduce.SCALES["cpu"].departs)


def test_bad_against_or_scale_is_one_line_and_status_2(tmp_path, capsys) -> None:
    assert cli.main(["report", "--experiment", "x", "--against", str(tmp_path / "no.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["reproduce", "--scale", "huge"])
    assert exc.value.code == 2


def test_report_names_figures_as_the_report_numbers_them_and_counts_read_right() -> None:
    assert report._label("figure4") == "Figure 4" and report._label("table7") == "Table 7"
    assert report._label("curves") == "curves"
    assert plural(1, "sweep") == "1 sweep" and plural(2, "sweep") == "2 sweeps"
