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

import contextlib
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator
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


def read_histories(uri: str, run_ids: Iterable[str], keys: Iterable[str], exp_id: str | None = None) -> pd.DataFrame:
    """Every logged value of metrics ``keys`` of ``run_ids``: a long frame (run_id, key, step,
    timestamp, value), sorted by run, key, step and time. ``exp_id``: the runs are most of that
    experiment's trials, and a database reads them all in one query (faster than by run id)."""
    ids, keys = list(dict.fromkeys(run_ids)), sorted(set(keys))
    rows: list[tuple] = []
    if ids and keys:
        if is_sql(uri):
            try:
                rows = _sql_histories(uri, ids, keys, exp_id)
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

    return (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error)


@contextlib.contextmanager
def _connect(uri: str) -> Iterator[Any]:
    """A SQLite file through Python's own ``sqlite3`` (SQLAlchemy's rows cost 5x the query on 10,000 runs);
    any other database through SQLAlchemy."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = sqlalchemy.engine.make_url(uri)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        con = sqlite3.connect(url.database, timeout=30)
        try:
            yield con
        finally:
            con.close()
        return
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool)  # no pooled handle outlives the call
    try:
        with engine.connect() as con:
            yield con
    finally:
        engine.dispose()


def _fetch(con: Any, sql: str, args: dict[str, Any]) -> list[tuple]:
    """All rows of ``sql`` (``:name`` parameters; a list value becomes a parenthesized IN list)."""
    flat: dict[str, Any] = {}
    for k, v in args.items():
        if isinstance(v, list):
            names = [f"{k}_{i}" for i in range(len(v))]
            sql = re.sub(rf":{k}\b", "(" + ", ".join(f":{n}" for n in names) + ")", sql)
            flat.update(zip(names, v, strict=True))
        else:
            flat[k] = v
    if isinstance(con, sqlite3.Connection):
        return con.execute(sql, flat).fetchall()
    from sqlalchemy import text

    return [tuple(row) for row in con.execute(text(sql), flat).fetchall()]


_OF_EXPERIMENT = ("FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = :kind_tag "
                  "WHERE r.experiment_id = :exp AND r.lifecycle_stage = 'active' AND k.value IN :kinds")  # fmt: skip
_OF_RUNS = f"JOIN (SELECT r.run_uuid {_OF_EXPERIMENT}) s ON s.run_uuid = t.run_uuid"


def _sql_runs(uri: str, exp_id: str, kinds: list[str]) -> list[RawRun]:
    args = {"kind_tag": KIND_TAG, "exp": int(exp_id), "kinds": kinds}
    with _connect(uri) as con:
        found = _fetch(con, f"SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time, k.value {_OF_EXPERIMENT}",
                       args)  # fmt: skip
        runs = {row[0]: RawRun(row[0], row[1] or "", row[2], row[3], row[4], row[5]) for row in found}
        for table in ("tags", "params"):
            for run_id, key, value in _fetch(con, f"SELECT t.run_uuid, t.key, t.value FROM {table} t {_OF_RUNS}", args):
                getattr(runs[run_id], table)[key] = value
        latest = f"SELECT t.run_uuid, t.key, t.value, t.is_nan FROM latest_metrics t {_OF_RUNS}"
        for run_id, key, value, is_nan in _fetch(con, latest, args):
            runs[run_id].metrics[key] = math.nan if is_nan else float(value)
    return list(runs.values())


def _sql_histories(uri: str, ids: list[str], keys: list[str], exp_id: str | None) -> list[tuple]:
    cols = "SELECT t.run_uuid, t.key, t.step, t.timestamp, t.value, t.is_nan FROM metrics t"
    found: list[tuple] = []
    with _connect(uri) as con:
        if exp_id is not None:  # the experiment's trials in one query, then ours among them
            found = _fetch(con, f"{cols} {_OF_RUNS} WHERE t.key IN :keys",
                           {"kind_tag": KIND_TAG, "exp": int(exp_id), "kinds": ["trial"], "keys": keys})  # fmt: skip
            wanted = set(ids)
            found = [row for row in found if row[0] in wanted]
        else:
            for i in range(0, len(ids), IN_CHUNK):
                found += _fetch(con, f"{cols} WHERE t.run_uuid IN :ids AND t.key IN :keys",
                                {"ids": ids[i : i + IN_CHUNK], "keys": keys})  # fmt: skip
    return [(r, k, s, t, math.nan if nan else v) for r, k, s, t, v, nan in found]


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
