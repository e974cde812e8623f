"""raysweep's benchmark suite: ``python -m benchmarks.run`` (see benchmarks/run.py and README.md)."""

import sys
from pathlib import Path

# Benchmark this checkout's code, even where another copy of raysweep is installed.
_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
