"""A study in its own installed package (tests/tiny_study) is found through the ``raysweep.studies``
entry point: `raysweep spaces` lists it, `raysweep sweep tiny` trains it on Ray workers and
`raysweep report` reports it, all from the command line. A study whose module the Ray workers
cannot import is refused with one line that names the module.

The package is pip-installed into a temporary folder (never into the test environment) and reaches
the CLI, and through it Ray's workers, by ``PYTHONPATH`` alone; ``tests/`` is not on that path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import raysweep
from raysweep import cli, tracking
from raysweep.search_spaces import SpaceError
from raysweep.studies import _REGISTERED, STUDIES
from raysweep.study import Study, StudyImportError

TINY = Path(__file__).resolve().parent / "tiny_study"
RAYSWEEP_ROOT = Path(raysweep.__file__).resolve().parent.parent  # where `import raysweep` finds this copy


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/tiny_study pip-installed into a fresh folder (built from a copy: the build writes beside its source)."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src" / "tiny_study"
    shutil.copytree(TINY, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "tiny_study" / "spaces.py").exists()
    return target


def _raysweep(args: list[str], path: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    """The `raysweep` console script with ``PYTHONPATH`` = ``path`` (plus raysweep itself), never tests/."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, [*path, RAYSWEEP_ROOT]))
    script = Path(sys.executable).with_name("raysweep")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "raysweep.cli"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_the_entry_point_lists_sweeps_and_reports_an_installed_study(site: Path, tracking_uri: str,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    bare = _raysweep(["spaces"], [], tmp_path)
    assert bare.returncode == 0, bare.stderr[-2000:]
    assert "tiny:" not in bare.stdout  # without the package there is no such study ...
    listed = _raysweep(["spaces"], [site], tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "tiny: an MLP on two Gaussian blobs" in listed.stdout  # ... installed, its entry point adds it
    assert "quick" in listed.stdout.split("tiny:")[1]

    uri = tracking_uri  # an empty store, copied (creating one takes seconds)
    swept = _raysweep(["sweep", "tiny", "--epochs", "2", "--experiment", "tiny", "--tracking-uri", uri,
                       "--storage-path", str(tmp_path / "ray"), "--quiet"], [site], tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "2 trials, status FINISHED" in swept.stdout
    c = tracking.client(uri)
    runs = c.search_runs([c.get_experiment_by_name("tiny").experiment_id])
    trials = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert all(r.data.metrics["val_acc"] > 0.8 for r in trials)  # two separable blobs, trained on Ray workers

    reported = _raysweep(["report", "--experiment", "tiny", "--tracking-uri", uri, "--out", str(tmp_path / "rep")],
                         [site], tmp_path)  # fmt: skip
    assert reported.returncode == 0, reported.stdout[-3000:] + reported.stderr[-3000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Table T: validation accuracy per hidden width" in text  # the plugin's own report section
    assert trials[0].info.run_id in text


def _ghost(tmp_path: Path) -> Study:
    """A study whose trainable lives in a module only this (driver) process can import."""
    (tmp_path / "ghost_study_mod.py").write_text("def data(source):\n    return 'synthetic', 'none'\n"
                                                 "def train(config, ctx):\n    raise AssertionError('never runs')\n")
    return Study("ghost", "a study the workers cannot import", trainable_path="ghost_study_mod:train",
                 spaces_module="raysweep.search_spaces.cnn", data_path="ghost_study_mod:data", metric="val_acc",
                 mode="max")  # fmt: skip


def test_a_study_the_workers_cannot_import_is_refused_in_one_line(ray_session, tracking_uri, tmp_path, capsys,
                                                                  monkeypatch) -> None:  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))  # the driver imports it; Ray's workers (started before) cannot
    monkeypatch.setitem(_REGISTERED, "ghost", _ghost(tmp_path))
    assert STUDIES["ghost"].prepare_data(None) == ("synthetic", "none")
    code = cli.main(["sweep", "ghost", "--data", "synthetic", "--epochs", "1", "--experiment", "ghost",
                     "--storage-path", str(tmp_path / "ray"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "module 'ghost_study_mod' cannot be imported on Ray node" in err[0] and "on every node" in err[0]
    assert tracking.client(tracking_uri).get_experiment_by_name("ghost") is None  # refused before any run


def test_the_trainable_names_a_module_missing_on_its_node() -> None:
    study = Study("gone", "", trainable_path="raysweep_no_such_pkg.train:fit", spaces_module="x", data_path="x:y",
                  metric="val_acc", mode="max")  # fmt: skip
    with pytest.raises(StudyImportError, match="study 'gone': module 'raysweep_no_such_pkg.train' .*"
                                               "'raysweep_no_such_pkg'.* install the study's package on every node"):
        study.trainable()({}, None)


def test_a_plugin_that_fails_to_load_says_why(monkeypatch) -> None:
    from importlib.metadata import EntryPoint

    from raysweep import studies

    monkeypatch.setattr(studies, "_BROKEN", {})
    studies._load_plugin(EntryPoint("broken", "raysweep_no_such_pkg.spaces", studies.ENTRY_POINTS))
    with pytest.raises(SpaceError, match="study 'broken': entry point broken = 'raysweep_no_such_pkg.spaces' did "
                                         "not load: ModuleNotFoundError"):  # fmt: skip
        studies.get_study("broken")
