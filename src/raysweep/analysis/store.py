"""An experiment's runs and metric histories in a few batched reads, whatever the tracking store.

Why: read run by run (``get_metric_history`` per run and per metric), a report over 1,000 trials
spends most of its time in round trips. Here:

- a database store (``sqlite:``, ``postgresql:``, ``mysql:``, ``mssql:``) is read with plain SQL over
  MLflow's own tables: one query each for the runs, their tags, params and latest metrics, and one
  query per 500 runs for histories;
- a tracking server (``http(s):``) through ``search_runs`` pages of up to 50,000 runs and the
  server's ``metrics/get-history-bulk-interval`` endpoint (100 runs per request, per metric);
- anything else (a file store), or a database whose tables differ from what we expect, through
  ``MlflowClient`` alone, histories one run at a time.

Both fast paths return what ``MlflowClient`` would: active runs only, a NaN-flagged value as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from raysweep import tracking
from raysweep.tracking import KIND_TAG

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
PAGE = 50_000  # search_runs' largest page (MLflow's SEARCH_MAX_RESULTS_THRESHOLD)
BULK_RUNS = 100  # run ids per get-history-bulk-interval request (the server's limit)
BULK_STEPS = 2_500  # values per run and request (the server's limit; more epochs are sampled)
IN_CHUNK = 500  # run ids per SQL ``IN (...)``
HISTORY_COLUMNS = ["run_id", "key", "step", "timestamp", "value"]


@dataclass
class RawRun:
    """One run as stored: what ``MlflowClient.get_run`` gives, as plain dicts."""

    run_id: str
    run_name: str
    status: str
    start_time: int | None  # ms since the epoch
    end_time: int | None
    kind: str = ""  # raysweep.kind tag
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value of each metric


def is_sql(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES


def read_runs(uri: str, exp_id: str, kinds: Iterable[str]) -> list[RawRun]:
    """The active runs of experiment ``exp_id`` tagged ``raysweep.kind`` in ``kinds``."""
    kinds = list(kinds)
    if is_sql(uri):
        try:
            return _sql_runs(uri, exp_id, kinds)
        except _sql_errors():  # not the tables we know: the client reads any store
            pass
    out: list[RawRun] = []
    c = tracking.client(uri)
    for kind in kinds:
        token = None
        while True:
            page = c.search_runs([exp_id], filter_string=f"tags.`{KIND_TAG}` = '{kind}'", max_results=PAGE,
                                 page_token=token)  # fmt: skip
            out += [RawRun(r.info.run_id, r.info.run_name, r.info.status, r.info.start_time, r.info.end_time, kind,
                           dict(r.data.tags), dict(r.data.params), dict(r.data.metrics)) for r in page]  # fmt: skip
            token = page.token
            if not token:
                break
    return out


def read_histories(uri: str, run_ids: Iterable[str], keys: Iterable[str]) -> pd.DataFrame:
    """Every logged value of metrics ``keys`` of ``run_ids``: a long frame (run_id, key, step,
    timestamp, value), sorted by run, key, step and time."""
    ids, keys = list(dict.fromkeys(run_ids)), sorted(set(keys))
    rows: list[tuple] = []
    if ids and keys:
        if is_sql(uri):
            try:
                rows = _sql_histories(uri, ids, keys)
            except _sql_errors():
                rows = _client_histories(uri, ids, keys)
        elif uri.startswith(("http://", "https://")):
            rows = _server_histories(uri, ids, keys)
        else:
            rows = _client_histories(uri, ids, keys)
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    return frame.sort_values(["run_id", "key", "step", "timestamp"], kind="stable").reset_index(drop=True)


# --- a database store: MLflow's tables, read directly ---------------------------------------------


def _sql_errors() -> tuple[type[BaseException], ...]:
    import sqlalchemy.exc

    return (sqlalchemy.exc.SQLAlchemyError,)


def _engine(uri: str) -> Any:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(uri, poolclass=NullPool)  # no pooled handle outlives the call


_OF_EXPERIMENT = ("FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = :kind_tag "
                  "WHERE r.experiment_id = :exp AND r.lifecycle_stage = 'active' AND k.value IN :kinds")  # fmt: skip


def _sql_runs(uri: str, exp_id: str, kinds: list[str]) -> list[RawRun]:
    from sqlalchemy import bindparam, text

    def q(sql: str) -> Any:
        return text(sql).bindparams(bindparam("kinds", expanding=True))

    args = {"kind_tag": KIND_TAG, "exp": int(exp_id), "kinds": kinds}
    engine = _engine(uri)
    try:
        with engine.connect() as con:
            runs = {row[0]: RawRun(row[0], row[1] or "", row[2], row[3], row[4], row[5]) for row in con.execute(
                q(f"SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time, k.value {_OF_EXPERIMENT}"), args)}
            for table, attr in (("tags", "tags"), ("params", "params")):
                for run_id, key, value in con.execute(q(f"SELECT t.run_uuid, t.key, t.value FROM {table} t JOIN ("
                                                        f"SELECT r.run_uuid {_OF_EXPERIMENT}) s "
                                                        "ON s.run_uuid = t.run_uuid"), args):  # fmt: skip
                    getattr(runs[run_id], attr)[key] = value
            for run_id, key, value, is_nan in con.execute(q(
                    "SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m JOIN ("
                    f"SELECT r.run_uuid {_OF_EXPERIMENT}) s ON s.run_uuid = m.run_uuid"), args):  # fmt: skip
                runs[run_id].metrics[key] = math.nan if is_nan else float(value)
    finally:
        engine.dispose()
    return list(runs.values())


def _sql_histories(uri: str, ids: list[str], keys: list[str]) -> list[tuple]:
    from sqlalchemy import bindparam, text

    sql = text("SELECT run_uuid, key, step, timestamp, value, is_nan FROM metrics "
               "WHERE run_uuid IN :ids AND key IN :keys").bindparams(bindparam("ids", expanding=True),
                                                                     bindparam("keys", expanding=True))  # fmt: skip
    rows: list[tuple] = []
    engine = _engine(uri)
    try:
        with engine.connect() as con:
            for i in range(0, len(ids), IN_CHUNK):
                found = con.execute(sql, {"ids": ids[i : i + IN_CHUNK], "keys": keys})
                rows += [(r, k, s, t, math.nan if nan else v) for r, k, s, t, v, nan in found]
    finally:
        engine.dispose()
    return rows


# --- a tracking server: the bulk history endpoint the MLflow UI itself uses ------------------------


def _server_histories(uri: str, ids: list[str], keys: list[str]) -> list[tuple]:
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    rows: list[tuple] = []
    for key in keys:
        for i in range(0, len(ids), BULK_RUNS):
            resp = http_request(creds, "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", "GET",
                                params={"run_ids": ids[i : i + BULK_RUNS], "metric_key": key,
                                        "max_results": BULK_STEPS})  # fmt: skip
            if resp.status_code == 404:  # an older server without the endpoint
                return _client_histories(uri, ids, keys)
            resp.raise_for_status()
            rows += [(m["run_id"], m["key"], int(m.get("step", 0)), int(m.get("timestamp", 0)), float(m["value"]))
                     for m in resp.json().get("metrics", [])]  # fmt: skip
    return rows


def _client_histories(uri: str, ids: list[str], keys: list[str]) -> list[tuple]:
    """The slow path for stores with no batched read: one request per run and metric."""
    c = tracking.client(uri)
    return [(r, k, m.step, m.timestamp, m.value) for r in ids for k in keys for m in c.get_metric_history(r, k)]
