"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Why one module: the driver and every trial (on any node) open runs the same way, so a sweep looks
the same in a local SQLite file and on a cluster's tracking server. Only ``MlflowClient`` is used,
never the fluent API, because the fluent API keeps a process-global active run and tracking URI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "raysweep.kind"  # "sweep", "trial" or "report"
KEY_TAG = "raysweep.trial_key"  # a trial's identity: study, data, config (seed included)
OUTCOME_TAG = "raysweep.outcome"  # completed, early_stopped, stopped_by_scheduler, diverged, ...
REASON_TAG = "raysweep.reason"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def client(uri: str):
    """An ``MlflowClient`` bound to ``uri`` (no process-global state touched); on a tracking server,
    one whose calls fail with ``TrackingUnavailable`` when the server stays away (``_ServerClient``)."""
    from mlflow.tracking import MlflowClient

    inner = MlflowClient(tracking_uri=uri)
    return _ServerClient(inner, uri) if uri.startswith(("http://", "https://")) else inner


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer through MLflow's retries; the message is one line."""


def retry_budget() -> tuple[int, float]:
    """(retries, seconds) MLflow's HTTP client waits for a server that does not answer before it gives
    up: exponential backoff, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` x 2^(n-1) s before retry n (none
    before the first, at most 120 s each), ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` retries (defaults
    2 and 7: about 4 minutes), plus up to ``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` s each."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, MLFLOW_HTTP_REQUEST_MAX_RETRIES

    retries, factor = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    return retries, float(sum(min(120.0, factor * 2 ** (n - 1)) for n in range(2, retries + 1)))


def _unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the server could not be reached or kept failing:
    refused or dropped connections, timeouts, retries exhausted on 5xx answers."""
    import requests
    import urllib3

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError)):
            return True
        if "Max retries exceeded" in str(exc) or "failed with timeout exception" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _ServerClient:
    """An ``MlflowClient`` on a tracking server. MLflow's own HTTP client retries every call with
    backoff (``retry_budget``), which carries a sweep through a server restart; a server away
    longer fails the call with one line naming it, and this client's later calls fail at once (a
    trial that cannot log stops, and its checkpoint stays for ``raysweep resume``)."""

    def __init__(self, inner: Any, uri: str) -> None:
        self._inner, self._uri = inner, uri
        self._down = ""  # why the server was given up on, once it was

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._down:
                raise TrackingUnavailable(self._down)
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                retries, seconds = retry_budget()
                self._down = (
                    f"MLflow tracking server {self._uri} did not answer through {retries} retries over ~{seconds:.0f} "
                    "s (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR); runs and checkpoints "
                    "are kept: start it again, then resume the sweep")  # fmt: skip
                raise TrackingUnavailable(self._down) from exc

        return call


def artifact_root(uri: str) -> str | None:
    """Artifacts beside a SQLite store (``<db dir>/mlartifacts``); the server decides otherwise."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def prepare_store(uri: str) -> None:
    """Ready a local SQLite store for many writers at once (the trials of one sweep, or of several).

    WAL journal: readers never block the writer and a commit is one append (10 processes logging
    100 epochs each, 2 writes an epoch: 6 s against 26 s with SQLite's default journal, here);
    the mode stays in the file, so every process that opens it later writes the same way. MLflow
    waits up to 20 s for a lock itself (``busy_timeout``). A new store's schema is created under a
    lock: two processes creating it at once each run MLflow's migrations, and all but one fail.
    WAL needs a local disk (not NFS): a store shared by several machines is a tracking server.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    with FileLock(str(Path(tempfile.gettempdir()) / f"raysweep-store-{digest}.lock"), timeout=600):
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            fresh = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone() is None
        if fresh:
            client(uri).search_experiments()  # MLflow creates its schema, once
            with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema in the file itself


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (None for any other store, or an in-memory one)."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    return Path(uri[len("sqlite:///") :])


class StoreError(ValueError):
    """The tracking store named does not exist; the message says what to do."""


def check_store(uri: str) -> None:
    """A SQLite store must exist before it is read (MLflow would silently create an empty one)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.is_file():
            raise StoreError(f"no MLflow store at {path}; run a sweep first or pass --tracking-uri")


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside the store) if missing."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = artifact_root(uri)
    location = f"{root}/{hashlib.sha1(name.encode()).hexdigest()[:12]}" if root else None
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit() -> str:
    """The commit of the raysweep checkout, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def trial_key(study: str, data: str, config: dict[str, Any], identity: dict[str, Any] | None = None) -> str:
    """A trial's identity: the same study, data, configuration (seed included) and every other input
    that changes its result (``identity``: epochs, patience, result-relevant options) -> same key.
    Runtime options (threads, sampling, logging) are not part of it."""
    what = {"study": study, "data": data, "config": config, **({"inputs": identity} if identity else {})}
    blob = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrackingInfo:
    """What a trial needs to log into its sweep: picklable, so it travels to any node."""

    uri: str
    experiment_id: str
    parent_run_id: str


class RunLogger:
    """Logs into one MLflow run; metrics are sent per call as one batch.

    ``RunLogger.disabled()`` logs nothing: Ray Train workers other than rank 0, untracked runs.
    """

    def __init__(self, uri: str, run_id: str, fresh: bool = False) -> None:
        self.uri = uri
        self.run_id = run_id
        self.fresh = fresh  # created by this logger: no params logged yet, none to read first
        self.ended: str | None = None  # the status this logger closed the run with
        self.figures = True  # draw display-only figures (the training loop turns it off for short trials)
        self._client = client(uri) if run_id else None

    @classmethod
    def disabled(cls) -> RunLogger:
        return cls("", "")

    def __bool__(self) -> bool:
        return bool(self.run_id)

    def log_params(self, params: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """Params not logged yet (a resumed run keeps its own), with ``metrics`` in the same request."""
        if not self.run_id:
            return
        from mlflow.entities import Param

        existing = {} if self.fresh else self._client.get_run(self.run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        first = self._metrics(metrics or {}, None)
        if not new and not first:
            return
        for i in range(0, max(1, len(new)), 100):  # MLflow takes at most 100 params a request
            self._client.log_batch(self.run_id, params=new[i : i + 100], metrics=first if i == 0 else ())

    def log_metrics(self, metrics: dict[str, float], step: int | None = None,
                    tags: dict[str, Any] | None = None) -> None:  # fmt: skip
        """The numbers in ``metrics`` at ``step``, and ``tags``, in one request."""
        if not self.run_id:
            return
        from mlflow.entities import RunTag

        batch = self._metrics(metrics, step)
        tag_batch = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        if batch or tag_batch:
            self._client.log_batch(self.run_id, metrics=batch, tags=tag_batch)

    @staticmethod
    def _metrics(metrics: dict[str, float], step: int | None) -> list:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        return [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]  # fmt: skip

    def set_tags(self, tags: dict[str, Any]) -> None:
        """All ``tags`` in one request (a call per tag costs a round trip each on a tracking server)."""
        if not self.run_id or not tags:
            return
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        if not self.run_id:
            return
        self._client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if not self.run_id:
            return
        self._client.log_dict(self.run_id, data, artifact_file)

    def log_figure(self, draw: Callable[[], Any], artifact_file: str) -> None:
        """Log the matplotlib figure ``draw()`` returns; not drawn at all where figures are off.

        A figure only displays data the run also logs as JSON (the report draws from that), and
        drawing one costs about 0.35 s of a 2-core CPU: a ~1 s trial would spend a third of its time on it.
        """
        if not self.run_id or not self.figures:
            return
        self._client.log_figure(self.run_id, draw(), artifact_file)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.run_id:
            return
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_torch_state(self, state: dict, artifact_file: str) -> None:
        """Save a state dict with ``torch.save`` and log it (best weights, for reports/generation)."""
        if not self.run_id:
            return
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            torch.save(state, path)
            parent = str(Path(artifact_file).parent)
            self._client.log_artifact(self.run_id, str(path), None if parent == "." else parent)

    def end(self, status: str = "FINISHED") -> None:
        self.ended = status
        if not self.run_id:
            return
        self._client.set_terminated(self.run_id, status=status)


DEFAULT_UI = "http://127.0.0.1:5000"  # where `raysweep ui` serves a local store


def runs_link(base: str, experiment_id: str) -> str:
    """The classic runs table of an experiment (nested trials under their sweep)."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_link(uri: str, experiment_id: str) -> str:
    """The runs table of ``experiment_id`` as a person opens it: on the tracking server itself, or,
    for a local store, where `raysweep ui` (default port) serves it."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else DEFAULT_UI
    return runs_link(base, experiment_id)


def start_sweep_run(
    uri: str, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, Any]
) -> TrackingInfo:
    """Create the sweep's parent run and return what its trials need to nest under it."""
    c = client(uri)
    exp_id = ensure_experiment(uri, experiment)
    run = c.create_run(exp_id, run_name=run_name, tags={KIND_TAG: "sweep", **{k: str(v) for k, v in tags.items()}})
    RunLogger(uri, run.info.run_id).log_params(params)
    return TrackingInfo(uri, exp_id, run.info.run_id)


def find_sweep_run(uri: str, sweep_name: str):
    """The parent run of sweep ``sweep_name`` in any experiment, or None."""
    c = client(uri)
    exps = [e.experiment_id for e in c.search_experiments()]
    found = c.search_runs(exps, filter_string=f"tags.`raysweep.sweep_name` = '{sweep_name}' "
                          f"and tags.`{KIND_TAG}` = 'sweep'", max_results=1) if exps else []  # fmt: skip
    return found[0] if found else None


def reopen_sweep_run(uri: str, run_id: str) -> TrackingInfo:
    """Mark a sweep's parent run RUNNING again (resume) and return what its trials need."""
    c = client(uri)
    run = c.get_run(run_id)
    c.update_run(run_id, status="RUNNING")
    return TrackingInfo(uri, run.info.experiment_id, run_id)


def _key_filter(info: TrackingInfo, key: str) -> str:
    """The search for trial ``key``'s runs under its sweep."""
    return f"tags.`{KEY_TAG}` = '{key}' and tags.`{PARENT_TAG}` = '{info.parent_run_id}'"


def open_trial_run(info: TrackingInfo, name: str, key: str, tags: dict[str, Any]) -> RunLogger:
    """The child run for trial ``key``: the existing one if the trial ran before (resume), else new.

    Re-attaching by key is what keeps a resumed or restarted sweep free of duplicate runs.
    """
    c = client(info.uri)
    found = c.search_runs(
        [info.experiment_id],
        filter_string=_key_filter(info, key),
        max_results=1,
    )
    node_tags = {"raysweep.node": socket.gethostname(), **_ray_node()}
    if found:
        run_id = found[0].info.run_id
        c.update_run(run_id, status="RUNNING")
        logger = RunLogger(info.uri, run_id)
        logger.set_tags({**node_tags, "raysweep.attempts": int(found[0].data.tags.get("raysweep.attempts", "1")) + 1})
        return logger
    run = c.create_run(
        info.experiment_id,
        run_name=name,
        tags={
            PARENT_TAG: info.parent_run_id,
            KIND_TAG: "trial",
            KEY_TAG: key,
            "raysweep.attempts": "1",
            **node_tags,
            **{k: str(v) for k, v in tags.items()},
        },
    )
    run_id = run.info.run_id
    if info.uri.startswith(("http://", "https://")):  # a local store cannot lose a reply
        run_id = one_run_per_key(info, key)
    return RunLogger(info.uri, run_id, fresh=run_id == run.info.run_id)


def one_run_per_key(info: TrackingInfo, key: str) -> str:
    """The one trial run of ``key`` under the sweep, others deleted; its run id.

    A server that dies after committing ``create_run`` but before answering makes MLflow's HTTP
    client retry the request, and the retry creates a second run of the same trial: it would stay
    RUNNING and count as one more seed. The first run created wins, so each retry agrees on it.
    """
    c = client(info.uri)
    runs = c.search_runs(
        [info.experiment_id],
        filter_string=_key_filter(info, key),
        max_results=100,
    )
    keep, *extra = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
    for r in extra:
        c.delete_run(r.info.run_id)
    return keep.info.run_id


SEARCH_PAGE = 10_000  # runs per search_runs page; a sweep may have more (the driver pages through them)


def child_runs(uri: str, info: TrackingInfo) -> list:
    """The trial runs of a sweep, every page of them (one search returns at most SEARCH_PAGE)."""
    flt = f"tags.`{PARENT_TAG}` = '{info.parent_run_id}'"
    c, runs, token = client(uri), [], None
    while True:
        page = c.search_runs([info.experiment_id], filter_string=flt, max_results=SEARCH_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _ray_node() -> dict[str, str]:
    """The Ray node a trial runs on (id and IP): several nodes may share one host name."""
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            return {"raysweep.node_id": ctx.get_node_id(), "raysweep.node_ip": ray.util.get_node_ip_address()}
    except Exception:  # noqa: BLE001 - the tags are informative only
        pass
    return {}
