"""Analysis: MLflow runs -> one DataFrame -> the report's tables and figures.

``load_runs`` is the only reader of MLflow runs; tables and figures are functions of its frame
(and of artifacts or metric histories fetched by run id). Each study registers its sections in
its own module (see ``registry``); ``build_report`` writes and logs them all. Names are loaded
lazily so that importing the package (the CLI does) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from raysweep.analysis.errors import AnalysisError

_LAZY = {"build_report": "report", "ReportResult": "report", "load_runs": "runs", "load_sweeps": "runs"}
__all__ = ["AnalysisError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"raysweep.analysis.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'raysweep.analysis' has no attribute {name!r}")
