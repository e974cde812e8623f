"""MLflow -> one pandas DataFrame, a row per trial run; everything after this reads the frame.

Columns (``load_runs``):

- identity: ``run_id``, ``run_name``, ``status`` (MLflow), ``outcome`` and ``reason`` (raysweep
  tags), ``study``, ``sweep_run_id``, ``sweep_name``, ``stage`` (Int64, <NA> outside a staged
  sweep), ``stage_param``, ``trial_key``, ``node``, ``start_time``, ``end_time`` (UTC timestamps)
- ``params.<name>``: the trial's params, typed back (``"64"`` -> 64, ``"0.001"`` -> 0.001)
- ``metrics.<name>``: the last logged value of every metric (final epoch, test metrics, ...)
- ``best.<name>``: every per-epoch ``train_*``/``val_*`` metric at the trial's best epoch (where
  the study's ranking metric peaked, i.e. the checkpoint the test metrics come from)

Only ``MlflowClient`` is used (never the fluent API, which keeps process-global state).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep import tracking
from raysweep.analysis.errors import AnalysisError
from raysweep.search_spaces import typed
from raysweep.tracking import KIND_TAG, OUTCOME_TAG, PARENT_TAG, REASON_TAG

IDENTITY = ["run_id", "run_name", "status", "outcome", "reason", "study", "sweep_run_id", "sweep_name",
            "stage", "stage_param", "trial_key", "node", "start_time", "end_time"]  # fmt: skip
PER_EPOCH_PREFIXES = ("train_", "val_")


def mode_of(metric: str) -> str:
    """Direction of a metric by name, for studies the registry does not know: accuracies up."""
    return "max" if "acc" in metric else "min"


def ranking(study: str, sweep_metric: str | None = None) -> tuple[str, str]:
    """(metric, mode) that ranks the trials of ``study``: the study registry's, else the sweep's."""
    from raysweep.studies import STUDIES

    if study in STUDIES:
        return STUDIES[study].metric, STUDIES[study].mode
    if sweep_metric:
        return sweep_metric, mode_of(sweep_metric)
    return "val_loss", "min"


def store_client(uri: str):
    """The ``MlflowClient`` of the existing store at ``uri``; AnalysisError (the CLI shows it as one
    line) if there is none."""
    try:
        tracking.check_store(uri)
    except tracking.StoreError as exc:
        raise AnalysisError(str(exc)) from None
    return tracking.client(uri)


def experiment_id(experiment: str, uri: str) -> str:
    """The id of ``experiment``; AnalysisError naming the experiments that do exist otherwise."""
    c = store_client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in c.search_experiments())
        known = ", ".join(repr(n) for n in names) or "none"
        raise AnalysisError(f"no experiment {experiment!r} at {uri}; experiments there: {known}")
    return exp.experiment_id


def _search(uri: str, exp_id: str, kind: str) -> list:
    return tracking.client(uri).search_runs(
        [exp_id], filter_string=f"tags.`{KIND_TAG}` = '{kind}'", max_results=50000
    )


def load_sweeps(experiment: str, uri: str) -> pd.DataFrame:
    """A row per sweep (parent) run: run_id, sweep_name, study, status, best_run_id, data, data_sha256 (its
    content hash), start_time, params.*."""
    rows = []
    for r in _search(uri, experiment_id(experiment, uri), "sweep"):
        tags = r.data.tags
        rows.append({
            "run_id": r.info.run_id,
            "sweep_name": tags.get("raysweep.sweep_name", r.info.run_name),
            "study": tags.get("raysweep.study", ""),
            "status": r.info.status,
            "best_run_id": tags.get("raysweep.best_run_id", ""),
            "data": tags.get("raysweep.data", ""),
            "data_sha256": tags.get("raysweep.data_sha256", ""),
            "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
            **{f"params.{k}": typed(v) for k, v in r.data.params.items()},
        })  # fmt: skip
    cols = ["run_id", "sweep_name", "study", "status", "best_run_id", "data", "data_sha256", "start_time"]
    return pd.DataFrame(rows, columns=None if rows else cols)


def load_runs(experiment: str, tracking_uri: str) -> pd.DataFrame:
    """A row per trial run of ``experiment`` (see the module docstring for the columns).

    AnalysisError if the store, the experiment or its trial runs are missing.
    """
    exp_id = experiment_id(experiment, tracking_uri)
    trials = _search(tracking_uri, exp_id, "trial")
    if not trials:
        raise AnalysisError(
            f"experiment {experiment!r} has no trial runs; run `raysweep sweep STUDY --experiment "
            f"{experiment}` first"
        )
    sweeps = {r.info.run_id: r for r in _search(tracking_uri, exp_id, "sweep")}
    c = tracking.client(tracking_uri)
    rows = [_row(c, r, sweeps.get(r.data.tags.get(PARENT_TAG, ""))) for r in trials]
    df = pd.DataFrame(rows)
    for col in IDENTITY:
        if col not in df:
            df[col] = None
    df["stage"] = pd.to_numeric(df["stage"], errors="coerce").astype("Int64")
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    rest = sorted(c for c in df.columns if c not in IDENTITY)
    return df[IDENTITY + rest].sort_values("start_time", kind="stable").reset_index(drop=True)


def _row(c: Any, run: Any, sweep: Any) -> dict[str, Any]:
    tags, info = run.data.tags, run.info
    sweep_tags = sweep.data.tags if sweep is not None else {}
    study = tags.get("raysweep.study") or sweep_tags.get("raysweep.study", "")
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "status": info.status,
        "outcome": tags.get(OUTCOME_TAG, ""),
        "reason": tags.get(REASON_TAG, ""),
        "study": study,
        "sweep_run_id": tags.get(PARENT_TAG, ""),
        "sweep_name": sweep_tags.get("raysweep.sweep_name", sweep.info.run_name if sweep is not None else ""),
        "stage": tags.get("raysweep.stage"),
        "stage_param": tags.get("raysweep.stage_param", ""),
        "trial_key": tags.get(tracking.KEY_TAG, ""),
        "node": tags.get("raysweep.node", ""),
        "start_time": info.start_time,
        "end_time": info.end_time,
    }
    row.update({f"params.{k}": typed(v) for k, v in run.data.params.items()})
    row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
    metric, mode = ranking(study, sweep.data.params.get("metric") if sweep is not None else None)
    row.update(_at_best_epoch(c, info.run_id, run.data.metrics, metric, mode))
    return row


def _at_best_epoch(c: Any, run_id: str, final: dict[str, float], metric: str, mode: str) -> dict[str, float]:
    """``best.<m>`` for every per-epoch metric: its value at the epoch where ``metric`` peaked."""
    if metric not in final:
        return {}
    ranked = {m.step: m.value for m in c.get_metric_history(run_id, metric) if math.isfinite(m.value)}
    if not ranked:
        return {}
    step = final.get("best_epoch")
    if step not in ranked:
        pick = max if mode == "max" else min
        step = pick(ranked, key=lambda s: (ranked[s], -s) if mode == "max" else (ranked[s], s))
    out = {f"best.{metric}": ranked[step]}
    for name in final:
        if name != metric and name.startswith(PER_EPOCH_PREFIXES):
            at = [m.value for m in c.get_metric_history(run_id, name) if m.step == step]
            out[f"best.{name}"] = at[-1] if at else math.nan
    return out


def history(tracking_uri: str, run_id: str, metric: str) -> pd.Series:
    """A metric's values by step (epoch) for one run; empty if never logged."""
    hist = tracking.client(tracking_uri).get_metric_history(run_id, metric)
    last = {m.step: m.value for m in sorted(hist, key=lambda m: (m.step, m.timestamp))}
    return pd.Series(last, name=metric, dtype=float).sort_index()


def json_artifact(tracking_uri: str, run_id: str, path: str) -> Any | None:
    """A JSON artifact of a run, or None if the run has no such artifact."""
    local = download(tracking_uri, run_id, path)
    return json.loads(local.read_text()) if local else None


def text_artifact(tracking_uri: str, run_id: str, path: str) -> str | None:
    """A text artifact of a run, or None if absent."""
    local = download(tracking_uri, run_id, path)
    return local.read_text(errors="replace") if local else None


def download(tracking_uri: str, run_id: str, path: str, dest: str | None = None) -> Path | None:
    """A local copy of one artifact of a run (in ``dest`` or a fresh temp folder); None if absent."""
    c = tracking.client(tracking_uri)
    folder = str(Path(path).parent) if str(Path(path).parent) != "." else None
    names = {a.path for a in c.list_artifacts(run_id, folder)}
    if path not in names:
        return None
    return Path(c.download_artifacts(run_id, path, dest or tempfile.mkdtemp(prefix="raysweep-art-")))
