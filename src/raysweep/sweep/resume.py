"""Resume: what an earlier attempt of a sweep already finished (MLflow) and left mid-way (checkpoints).

A trial's identity is ``tracking.trial_key`` (study, data and configuration, seed included), so a
resumed or extended sweep runs each configuration once, wherever it was recorded.
"""

from __future__ import annotations

import json
from typing import Any

from raysweep import tracking
from raysweep.search_spaces import SpaceError
from raysweep.studies import Study
from raysweep.tracking import OUTCOME_TAG, TrackingInfo


def recorded_trials(info: TrackingInfo, study: Study) -> dict[str, dict[str, Any]]:
    """Trials of this sweep that need no rerun, by key: finished, diverged, or stopped by a scheduler
    (results too; a stop is tagged as it is decided, ``sweep.asha.tag_stop``)."""
    out = {}
    for run in tracking.child_runs(info.uri, info):
        outcome = run.data.tags.get(OUTCOME_TAG, "")
        if run.info.status == "FINISHED" or outcome == "diverged" or "raysweep.stop.rung" in run.data.tags:
            rec = record_from_run(run, study)
            out[rec["key"]] = rec
    return out


def record_from_run(run: Any, study: Study) -> dict[str, Any]:
    """A trial record rebuilt from its MLflow run (typed config from the study's hyperparameters)."""
    hypers = study.hypers
    config = {k: hypers[k].parse(v) for k, v in run.data.params.items() if k in hypers}
    metrics = dict(run.data.metrics)
    score = None if metrics.get("diverged") else metrics.get(f"best_{study.metric}")
    tags = run.data.tags
    rec = {"config": config, "metrics": metrics, "score": score, "key": tags.get(tracking.KEY_TAG, ""),
           "status": "TERMINATED", "error": "", "run_id": run.info.run_id}  # fmt: skip
    if "raysweep.stage" in tags:
        rec["raysweep.stage"], rec["raysweep.stage_param"] = int(tags["raysweep.stage"]), tags["raysweep.stage_param"]
    return rec


def find_checkpoints(storage: str, name: str, study: str, data: str,
                     identity: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Latest checkpoint (path and config) of every trial of sweep ``name`` in ``storage``, by key.

    Scans the trial folders of every Tune run of the sweep (the first run, its stages, earlier
    resumes): a trial's folder holds ``params.json`` (its config) and ``checkpoint_NNNNNN/``.
    Works for local folders and for s3:// / gs:// URIs (pyarrow file systems).
    """
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(storage) if "://" in storage else (pafs.LocalFileSystem(), storage)
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    try:
        runs = [i for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory
                and (i.base_name == name or i.base_name.startswith(name + "-"))]  # fmt: skip
    except FileNotFoundError:
        return {}  # nothing stored yet: every trial starts fresh
    except OSError as exc:  # unreadable (permissions, an unmounted NFS, s3 credentials): never "retrain all"
        raise SpaceError(f"cannot read the sweep's checkpoints under --storage-path {storage}: "
                         f"{str(exc).splitlines()[0]}; fix access to it (or pass the right --storage-path) "
                         "and resume again — nothing was started") from None
    for run in runs:
        for trial in fs.get_file_info(pafs.FileSelector(run.path)):
            if trial.type != pafs.FileType.Directory:
                continue
            entries = fs.get_file_info(pafs.FileSelector(trial.path))
            names = {e.base_name: e for e in entries}
            ckpts = sorted(n for n, e in names.items()
                           if n.startswith("checkpoint_") and e.type == pafs.FileType.Directory)  # fmt: skip
            if "params.json" not in names or not ckpts:
                continue
            with fs.open_input_stream(names["params.json"].path) as f:
                config = json.loads(f.read().decode())
            key = tracking.trial_key(study, data, config, identity)
            path = names[ckpts[-1]].path
            uri = f"{storage.split('://')[0]}://{path}" if "://" in storage else path
            stamp = ckpts[-1] + run.base_name
            if key not in found or found[key][0] < stamp:
                found[key] = (stamp, uri, config)
    return {k: {"path": v[1], "config": v[2]} for k, v in found.items()}
