"""The structure holds: dependencies point one way, and spaces are plain data (no torch).

Layers, top to bottom: cli -> reproduce -> sweep / analysis / ui -> studies -> trainables -> training,
models, data, tracking, context -> search_spaces, study, metrics, plots, configuration, stats, reference,
text.
A module may import its own layer or any below it, never one above (checked on the source with ast,
imports inside functions too).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "raysweep"
LAYERS = [  # top first; a module's layer is that of its longest matching prefix
    ("cli",),
    ("reproduce",),  # runs sweeps, then the report against its source
    ("sweep", "analysis", "ui"),
    ("studies",),
    ("trainables",),
    ("training", "models", "data", "tracking", "context"),
    ("search_spaces", "study", "metrics", "plots", "configuration", "stats", "reference", "text"),
]


def _layer(module: str) -> int:
    head = module.split(".")[1] if module.startswith("raysweep.") else ""
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m == "raysweep" or m.startswith("raysweep.")}


def test_no_module_imports_a_layer_above_it() -> None:
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        if module == "raysweep":
            continue
        for target in _imports(path):
            if target != "raysweep" and _layer(target) < _layer(module):
                upward.append(f"{module} imports {target}")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)


def _studies() -> list[str]:
    """The package's own studies (tests may register more, which a fresh interpreter lacks)."""
    from raysweep.studies import STUDIES

    return [n for n, s in STUDIES.items() if s.spaces_module.startswith("raysweep.")]


@pytest.mark.parametrize("study", _studies())
def test_spaces_listing_and_planning_load_no_torch(study: str, tmp_path: Path) -> None:
    code = f"""
import contextlib, io, json, sys
from raysweep.studies import get_study
s = get_study({study!r})
s.spaces, s.hypers
from raysweep import cli
with contextlib.redirect_stdout(io.StringIO()):
    assert cli.main(["spaces"]) == 0
from raysweep.sweep import SweepOptions, plan_sweep
plan = plan_sweep(SweepOptions(study={study!r}))
print(json.dumps({{"torch": "torch" in sys.modules, "ray": "ray" in sys.modules, "space": plan.space.name}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"torch": False, "ray": False, "space": seen["space"]}, seen


def test_restated_constants_agree_with_the_modules_they_mirror() -> None:
    from raysweep.models import char_lstm
    from raysweep.search_spaces import char_rnn

    assert char_rnn.MAX_LAYERS == char_lstm.MAX_LAYERS
    from raysweep.data import windows

    assert tuple(char_rnn.SPLIT_KINDS) == tuple(windows.SPLIT_KINDS)
