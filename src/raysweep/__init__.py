"""raysweep: deep-learning hyperparameter studies as Ray Tune sweeps, tracked in MLflow.

The Python API is the CLI's commands as functions, with the CLI's defaults (README, "From Python")::

    import raysweep
    result = raysweep.sweep("cnn", data="synthetic", epochs=2, overrides={"lr": [0.003, 0.03]})
    runs = raysweep.load_runs("cnn")   # the DataFrame `raysweep report` reads: a row per trial
    raysweep.resume(result.name)       # continue an interrupted sweep

Importing raysweep stays cheap (no Ray, torch, MLflow or pandas): each function imports what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from raysweep.sweep import SweepResult

__version__ = "0.1.0"
__all__ = ["__version__", "load_runs", "resume", "sweep"]  # sweep: see __getattr__


def _values(value: Any) -> str:
    """A ``--set`` value from Python: a list is the comma-separated list of values."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def __getattr__(name: str) -> Any:
    """``raysweep.sweep`` is the subpackage of that name (the sweep driver), imported on first use and
    callable: ``raysweep.sweep(...)`` runs ``_sweep`` (a subpackage would shadow a function here)."""
    if name == "sweep":
        return importlib.import_module("raysweep.sweep")
    raise AttributeError(f"module 'raysweep' has no attribute {name!r}")


def _sweep(study: str, space: str | None = None, *, overrides: dict[str, Any] | None = None,
           **options: Any) -> SweepResult:  # fmt: skip
    """``raysweep.sweep(...)``: run ``study``'s ``space`` as `raysweep sweep` does and return its result
    (``.best``, ``.trials``, ``.name``, ``.status``). ``overrides`` are the ``--set`` values
    ({"lr": [0.001, 0.01], "filters": 16}); ``options`` any other flag by its ``SweepOptions`` name
    (``data``, ``epochs``, ``search``, ``num_samples``, ``repeats``, ``experiment``, ``tracking_uri``,
    ``storage_path``, ``quiet`` ...). Bad input raises ``SpaceError`` with the CLI's one line, before Ray starts."""
    from raysweep.sweep import SweepOptions, run_sweep

    opts = SweepOptions(study=study, space=space, **options)
    opts.overrides = {k: _values(v) for k, v in (overrides or {}).items()}
    return run_sweep(opts)


def resume(name: str, tracking_uri: str | None = None, overrides: dict[str, Any] | None = None,
           **changes: Any) -> SweepResult:  # fmt: skip
    """Continue sweep ``name`` (its name or its folder under the storage path) as `raysweep resume` does:
    finished configurations are kept, unfinished ones continue from their checkpoints, ``overrides``
    extend a grid."""
    from raysweep.sweep import resume_sweep

    return resume_sweep(name, tracking_uri, {k: _values(v) for k, v in (overrides or {}).items()}, **changes)


def load_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The trial runs of ``experiment`` as the report reads them: a row per trial, columns ``run_id``,
    ``params.<name>``, ``metrics.<name>`` (last value), ``best.<name>`` (at the best epoch), ...
    (``raysweep.analysis.runs``). The store is ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``./mlflow.db``, as for the CLI."""
    from raysweep.analysis.runs import load_runs as _load_runs

    return _load_runs(experiment, tracking_uri)
