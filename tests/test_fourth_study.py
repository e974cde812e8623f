"""Adding a study is four files and no edit to raysweep: a tiny study from tests/ sweeps and reports."""

from __future__ import annotations

import contextlib
import io

from tiny_study import spaces

from raysweep import cli, tracking
from raysweep.models import model_names
from raysweep.studies import STUDIES, register_study
from raysweep.sweep import SweepOptions, run_sweep


def test_a_study_defined_in_tests_sweeps_and_reports(ray_session, tracking_uri, tmp_path) -> None:
    register_study(spaces.STUDY)  # what the installed package's entry point does (tests/test_plugin_study.py)
    assert STUDIES["tiny"] is spaces.STUDY
    spaces.STUDY.load_models()
    assert "tiny_mlp" in model_names()
    res = run_sweep(SweepOptions(study="tiny", epochs=2, storage_path=str(tmp_path / "r"), experiment="tiny",
                                 quiet=True))  # fmt: skip
    assert res.status == "FINISHED" and len(res.trials) == 2
    assert res.best is not None and res.best["score"] > 0.8  # two separable blobs
    runs = tracking.client(tracking_uri).search_runs([res.tracking.experiment_id])
    assert sum(r.data.tags.get(tracking.KIND_TAG) == "trial" for r in runs) == 2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["report", "--experiment", "tiny", "--tracking-uri", tracking_uri,
                         "--out", str(tmp_path / "rep")])  # fmt: skip
    assert code == 0, out.getvalue()
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Table T: validation accuracy per hidden width" in text
    assert res.best["run_id"] in text  # rows trace to their runs
    with contextlib.redirect_stdout(out):
        assert cli.main(["spaces"]) == 0
    assert "tiny: an MLP on two Gaussian blobs" in out.getvalue()
