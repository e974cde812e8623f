"""The Python API: `import raysweep` is cheap and exposes sweep / resume / load_runs with the CLI's
defaults, and the README's notebook session (its "From Python" block) runs as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_python_block() -> str:
    """The first ```python block of the README's "### From Python" section, exactly as printed."""
    text = README.read_text()
    section = text[text.index("### From Python") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's From Python section has no python block"
    return match.group(1)


def test_import_raysweep_exposes_the_api_and_loads_nothing_heavy(tmp_path: Path) -> None:
    code = """
import json, sys, inspect
import raysweep
heavy = [m for m in ("ray", "torch", "mlflow", "pandas", "optuna", "matplotlib") if m in sys.modules]
sig = {n: list(inspect.signature(getattr(raysweep, n)).parameters) for n in ("sweep", "resume", "load_runs")}
default = inspect.signature(raysweep.load_runs).parameters["tracking_uri"].default
from raysweep import sweep  # also the driver's subpackage, as before
print(json.dumps({"heavy": heavy, "sig": sig, "defaults": default, "callable": callable(raysweep.sweep),
                  "module": hasattr(sweep, "run_sweep")}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == [] and seen["callable"] and seen["module"]
    assert seen["sig"]["load_runs"] == ["experiment", "tracking_uri"] and seen["defaults"] is None
    assert seen["sig"]["sweep"][:2] == ["study", "space"] and "overrides" in seen["sig"]["sweep"]
    assert seen["sig"]["resume"][0] == "name"


def test_sweep_refuses_bad_input_before_ray(monkeypatch) -> None:
    import raysweep
    from raysweep.search_spaces import SpaceError

    with pytest.raises(SpaceError, match="unknown study 'nope'"):
        raysweep.sweep("nope")
    with pytest.raises(SpaceError, match="lr"):
        raysweep.sweep("cnn", data="synthetic", overrides={"lr": [0.001, -1]})


def test_the_readmes_notebook_session_runs(ray_session, tracking_uri: str, tmp_path: Path, monkeypatch) -> None:
    import raysweep

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the CLI's default store: ./mlflow.db (the fixture's empty copy)
    assert raysweep.__file__  # the block imports this raysweep
    code = readme_python_block()
    assert "raysweep.sweep(" in code and "raysweep.load_runs(" in code and ".savefig(" in code
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)  # exactly the README's code
    runs, result = ns["runs"], ns["result"]
    assert result.status == "FINISHED" and result.best["run_id"] in set(runs["run_id"])
    assert len(runs) == 2 and sorted(runs["params.lr"]) == [0.003, 0.03]
    assert runs["best.val_acc"].notna().all()
    assert (tmp_path / "val_acc_by_lr.png").stat().st_size > 1000  # the plot, drawn
    assert (tmp_path / "mlflow.db").exists() and raysweep.load_runs("notebook", tracking_uri).shape == runs.shape
