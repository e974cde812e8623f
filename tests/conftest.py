"""Shared fixtures: one Ray for the whole session, a fresh MLflow store per test, a private cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast instead of retrying
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded-data cache in a session temp folder, shared by Ray workers through the env."""
    os.environ["RAYSWEEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def ray_session(_private_cache: None):
    """The one Ray instance of the test session (2 CPUs, no dashboard)."""
    import ray

    from raysweep.sweep.placement import init_ray

    # Workers unpickle trainables defined in test modules: let them import tests/ as the driver does.
    tests_dir = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    init_ray(None, num_cpus=2)  # as a local sweep starts it
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created once: creating one (schema migrations) takes seconds."""
    from raysweep import tracking

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    tracking.client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(_empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh copy of the empty SQLite store; MLFLOW_TRACKING_URI restored afterwards."""
    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local copies of the data sets (CI exports RAYSWEEP_DATA_DIR); skip when absent."""
    root = os.environ.get("RAYSWEEP_DATA_DIR")
    if not root or not Path(root).exists():
        pytest.skip("RAYSWEEP_DATA_DIR is not set to the local data copies")
    return Path(root)


@pytest.fixture(scope="session")
def reported_sweep(ray_session, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny staged CNN sweep on synthetic data (baseline + one lr stage), then `raysweep report`.

    Shared by the analysis and browser tests so the session runs one such sweep.
    """
    import contextlib
    import io

    from raysweep import cli
    from raysweep.sweep import SweepOptions, run_sweep

    root = tmp_path_factory.mktemp("reported")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    opts = SweepOptions(study="cnn", space="report_ablation", data="synthetic", epochs=2, experiment="e2e-report",
                        tracking_uri=uri, storage_path=str(root / "ray"), quiet=True,
                        overrides={"lr": "0.001,0.01", "batch_size": "64", "filters": "8", "layers": "3"})  # fmt: skip
    result = run_sweep(opts)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["report", "--experiment", "e2e-report", "--tracking-uri", uri, "--out", str(root / "rep")])
    return {"uri": uri, "experiment": "e2e-report", "result": result, "out": root / "rep", "code": code,
            "stdout": out.getvalue()}  # fmt: skip
