"""MLflow -> one pandas DataFrame, a row per trial run; everything after this reads the frame.

Columns (``load_runs``):

- identity: ``run_id``, ``run_name``, ``status`` (MLflow), ``outcome`` and ``reason`` (raysweep
  tags), ``study``, ``sweep_run_id``, ``sweep_name``, ``stage`` (Int64, <NA> outside a staged
  sweep), ``stage_param``, ``trial_key``, ``node``, ``start_time``, ``end_time`` (UTC timestamps)
- ``params.<name>``: the trial's params, typed back (``"64"`` -> 64, ``"0.001"`` -> 0.001)
- ``metrics.<name>``: the last logged value of every metric (final epoch, test metrics, ...)
- ``best.<name>``: every per-epoch ``train_*``/``val_*`` metric at the trial's best epoch (where
  the study's ranking metric peaked, i.e. the checkpoint the test metrics come from)

Runs and histories are read in batches (``analysis.store``: SQL on a database store, bulk requests on a
tracking server), never a request per run; the fluent API (process-global state) is never used.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysweep import tracking
from raysweep.analysis import store
from raysweep.analysis.errors import AnalysisError
from raysweep.search_spaces import typed
from raysweep.tracking import OUTCOME_TAG, PARENT_TAG, REASON_TAG

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


def load_sweeps(experiment: str, uri: str) -> pd.DataFrame:
    """A row per sweep (parent) run: run_id, sweep_name, study, status, best_run_id, data, data_sha256 (its
    content hash), start_time, params.*."""
    rows = []
    for r in store.read_runs(uri, experiment_id(experiment, uri), ["sweep"]):
        rows.append({
            "run_id": r.run_id,
            "sweep_name": r.tags.get("raysweep.sweep_name", r.run_name),
            "study": r.tags.get("raysweep.study", ""),
            "status": r.status,
            "best_run_id": r.tags.get("raysweep.best_run_id", ""),
            "data": r.tags.get("raysweep.data", ""),
            "data_sha256": r.tags.get("raysweep.data_sha256", ""),
            "start_time": pd.to_datetime(r.start_time, unit="ms", utc=True),
            **{f"params.{k}": typed(v) for k, v in r.params.items()},
        })  # fmt: skip
    cols = ["run_id", "sweep_name", "study", "status", "best_run_id", "data", "data_sha256", "start_time"]
    return pd.DataFrame(rows, columns=None if rows else cols)


def load_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """A row per trial run of ``experiment`` (see the module docstring for the columns), from
    ``tracking_uri`` or the CLI's default store (``tracking.resolve_tracking_uri``).

    Batched: the runs with their tags, params and metrics, then the per-epoch histories of all of
    them, in a few reads (``analysis.store``), not a request per run. AnalysisError if the store,
    the experiment or its trial runs are missing.
    """
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    exp_id = experiment_id(experiment, tracking_uri)
    raw = store.read_runs(tracking_uri, exp_id, ["trial", "sweep"])
    trials = [r for r in raw if r.kind == "trial"]
    if not trials:
        raise AnalysisError(
            f"experiment {experiment!r} has no trial runs; run `raysweep sweep STUDY --experiment "
            f"{experiment}` first"
        )
    sweeps = {r.run_id: r for r in raw if r.kind == "sweep"}
    rows, ranks = [], {}
    for r in trials:
        row, ranks[r.run_id] = _row(r, sweeps.get(r.tags.get(PARENT_TAG, "")))
        rows.append(row)
    best = _at_best_epoch(tracking_uri, exp_id, {r.run_id: r.metrics for r in trials}, ranks)
    for row in rows:
        row.update(best.get(row["run_id"], {}))
    df = pd.DataFrame(rows)
    for col in IDENTITY:
        if col not in df:
            df[col] = None
    df["stage"] = pd.to_numeric(df["stage"], errors="coerce").astype("Int64")
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    rest = sorted(c for c in df.columns if c not in IDENTITY)
    return df[IDENTITY + rest].sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)


def _row(run: store.RawRun, sweep: store.RawRun | None) -> tuple[dict[str, Any], tuple[str, str]]:
    """A trial's row without its ``best.*`` values, and the (metric, mode) that ranks it."""
    tags = run.tags
    sweep_tags = sweep.tags if sweep is not None else {}
    study = tags.get("raysweep.study") or sweep_tags.get("raysweep.study", "")
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "run_name": run.run_name,
        "status": run.status,
        "outcome": tags.get(OUTCOME_TAG, ""),
        "reason": tags.get(REASON_TAG, ""),
        "study": study,
        "sweep_run_id": tags.get(PARENT_TAG, ""),
        "sweep_name": sweep_tags.get("raysweep.sweep_name", sweep.run_name if sweep is not None else ""),
        "stage": tags.get("raysweep.stage"),
        "stage_param": tags.get("raysweep.stage_param", ""),
        "trial_key": tags.get(tracking.KEY_TAG, ""),
        "node": tags.get("raysweep.node", ""),
        "start_time": run.start_time,
        "end_time": run.end_time,
    }
    row.update({f"params.{k}": _typed(v) for k, v in run.params.items()})
    row.update({f"metrics.{k}": v for k, v in run.metrics.items()})
    return row, ranking(study, sweep.params.get("metric") if sweep is not None else None)


_typed = functools.lru_cache(maxsize=100_000)(typed)  # 10,000 runs repeat a few hundred param strings


def _at_best_epoch(uri: str, exp_id: str, finals: dict[str, dict[str, float]],
                   ranks: dict[str, tuple[str, str]]) -> dict[str, dict[str, float]]:  # fmt: skip
    """``best.<m>`` of each run for every per-epoch metric: its value at the epoch where the run's
    ranking metric peaked (its logged ``best_epoch`` where that epoch has a finite value, else the
    earliest best one). One batched read of all the histories involved."""
    want = {rid: (metric, mode) for rid, (metric, mode) in ranks.items() if metric in finals[rid]}
    keys = {m for rid, (metric, _) in want.items()
            for m in (metric, *(n for n in finals[rid] if n.startswith(PER_EPOCH_PREFIXES)))}  # fmt: skip
    hist = store.read_histories(uri, want, keys, exp_id)
    if hist.empty:
        return {}
    hist = hist.drop_duplicates(["run_id", "key", "step"], keep="last")  # a re-logged epoch: its last value
    rank = pd.DataFrame([(rid, m, mode == "max", finals[rid].get("best_epoch")) for rid, (m, mode) in want.items()],
                        columns=["run_id", "key", "up", "logged"])  # fmt: skip
    ranked = hist.merge(rank, on=["run_id", "key"])
    ranked = ranked[np.isfinite(ranked["value"])]
    ranked = ranked.assign(pref=ranked["step"] != ranked["logged"], sign=ranked["value"].where(~ranked["up"],
                                                                                              -ranked["value"]))
    # the logged best epoch first; else the best value, the earliest epoch among equals
    chosen = ranked.sort_values(["run_id", "pref", "sign", "step"]).drop_duplicates("run_id")
    at = hist.merge(chosen[["run_id", "step"]], on=["run_id", "step"])
    values = {(r, k): v for r, k, v in zip(at["run_id"], at["key"], at["value"], strict=True)}
    out: dict[str, dict[str, float]] = {}
    for rid, key, value in zip(chosen["run_id"], chosen["key"], chosen["value"], strict=True):
        out[rid] = {f"best.{key}": float(value)}
        for name in finals[rid]:
            if name != key and name.startswith(PER_EPOCH_PREFIXES):
                out[rid][f"best.{name}"] = values.get((rid, name), math.nan)
    return out


def history(tracking_uri: str, run_id: str, metric: str) -> pd.Series:
    """A metric's values by step (epoch) for one run; empty if never logged."""
    return histories_of(tracking_uri, [run_id], [metric]).get((run_id, metric), pd.Series(dtype=float, name=metric))


def histories_of(tracking_uri: str, run_ids: Iterable[str], metrics: Iterable[str]) -> dict[tuple[str, str], pd.Series]:
    """(run_id, metric) -> its values by step (the last one logged per step), for many runs in one batched
    read; pairs never logged are absent."""
    hist = store.read_histories(tracking_uri, run_ids, metrics).drop_duplicates(["run_id", "key", "step"],
                                                                                keep="last")
    return {(rid, key): pd.Series(g["value"].to_numpy(), index=g["step"].to_numpy(), name=key, dtype=float)
            for (rid, key), g in hist.groupby(["run_id", "key"], sort=False)}  # fmt: skip


def history_table(tracking_uri: str, run_ids: Iterable[str], metric: str) -> pd.DataFrame:
    """One metric of many runs as a (run, epoch) table (NaN where a run has no value), in one batched
    read: what a band over thousands of curves needs, without a Series per run."""
    hist = store.read_histories(tracking_uri, run_ids, [metric]).drop_duplicates(["run_id", "step"], keep="last")
    return hist.pivot(index="run_id", columns="step", values="value")


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
