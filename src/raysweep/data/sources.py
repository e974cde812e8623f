"""Where a data set comes from: the hub id, a local folder in the hub's layout, or a synthetic set.

Why one resolver: every loader accepts the same ``--data`` values and explains a failure the same
way, and ``RAYSWEEP_DATA_DIR`` points all of them at local copies (machines with no hub access).
"""

from __future__ import annotations

import os
from pathlib import Path

from raysweep.data.errors import DataError

SYNTHETIC = "synthetic"


def resolve_source(data: str | None, local_name: str, hub_id: str) -> str:
    """The source a loader will read: ``data`` as given, else the local copy, else the hub id."""
    if data:
        if data == SYNTHETIC or _looks_like_hub_id(data):
            return data
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(
                f"data source {data!r} does not exist; pass --data with a folder in the hub's "
                f"layout (e.g. $RAYSWEEP_DATA_DIR/{local_name}), or --data {hub_id}"
            )
        return str(path.resolve())
    root = os.environ.get("RAYSWEEP_DATA_DIR")
    if root and (Path(root) / local_name).exists():
        return str((Path(root) / local_name).resolve())
    return hub_id


def _looks_like_hub_id(data: str) -> bool:
    """``owner/name`` that is not an existing path (a hub id)."""
    return data.count("/") == 1 and not data.startswith((".", "/", "~")) and not Path(data).exists()


def load_hub_dataset(source: str, local_name: str, hub_id: str, split: str | None = None):
    """``datasets.load_dataset(source)`` with every failure turned into one DataError."""
    import datasets

    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as exc:  # datasets raises many types; the user needs one message
        where = "the local folder" if Path(source).exists() else "the hub"
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(
            f"could not load {hub_id!r} data from {where} {source!r} ({msg}); {local_copy_hint(local_name)}"
        ) from None


def local_copy_hint(local_name: str) -> str:
    """How to point a loader at a local copy (ends every data error message)."""
    return (
        f"point at a local copy with --data PATH or RAYSWEEP_DATA_DIR (a folder holding "
        f"{local_name}/ in the hub's layout, e.g. {local_name}/plain_text/*.parquet)"
    )
