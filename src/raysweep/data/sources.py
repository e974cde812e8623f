"""Where a data set comes from: a hub id, a local folder in the hub's layout, a file, or "synthetic".

Why one resolver for every data set: each loader accepts the same ``--data`` values, spells the
resolved source the same way (every trial of a sweep, on any node, reads exactly what the driver
resolved), and explains a failure in the same one-line message. ``RAYSWEEP_DATA_DIR`` points all of
them at local copies (machines with no hub access).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysweep.data.errors import DataError

SYNTHETIC = "synthetic"
DATA_DIR_ENV = "RAYSWEEP_DATA_DIR"  # a folder holding each data set's folder (the data root)


@dataclass(frozen=True)
class DataSet:
    """What the resolver and its messages need to know of one data set."""

    local_name: str  # its folder under $RAYSWEEP_DATA_DIR
    hub_id: str  # its Hugging Face hub id
    files: str  # what its folder holds in the hub's layout (for messages), e.g. "plain_text/*.parquet"
    aliases: tuple[str, ...] = ()  # other hub names that redirect to hub_id
    file_suffix: str | None = None  # a single file with this suffix is a source too (its loader reads it)
    file_note: str = ""  # how such a file is read (for messages), e.g. "UTF-8, cut 90/5/5"

    def hint(self) -> str:
        """How to point at a local copy: ends every data error message of this data set."""
        also = f", or a {self.file_suffix} file: {self.file_note}" if self.file_suffix else ""
        return (
            f"point at a local copy with --data PATH (a folder in hub layout such as "
            f"<data>/{self.local_name} with {self.files}{also}) or set {DATA_DIR_ENV} to the "
            f"folder that contains {self.local_name}/"
        )


def local_copy(local_name: str) -> Path | None:
    """``$RAYSWEEP_DATA_DIR/<local_name>`` (resolved) if that folder exists, else None."""
    root = os.environ.get(DATA_DIR_ENV)
    folder = Path(root).expanduser() / local_name if root else None
    return folder.resolve() if folder is not None and folder.is_dir() else None


def resolve_source(data: str | os.PathLike[str] | None, dataset: DataSet) -> str:
    """The source the loaders read, spelled so that every trial reads the same one.

    - ``None`` (or ""): ``$RAYSWEEP_DATA_DIR/<local_name>`` if it exists, else the hub id;
    - ``"synthetic"``: the data set's built-in synthetic set;
    - an existing folder (hub layout) or file: its absolute path; a data root (a folder holding
      ``<local_name>/`` and no ``plain_text/``) stands for its ``<local_name>/``;
    - the hub id, an alias of it, or any ``owner/name`` that is no local path: the hub.

    DataError (one line, saying how to point at a local copy) for anything else.
    """
    if data is None or os.fspath(data) == "":
        folder = local_copy(dataset.local_name)
        return str(folder) if folder is not None else dataset.hub_id
    text = os.fspath(data)
    if text == SYNTHETIC:
        return SYNTHETIC
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "plain_text").is_dir() and (path / dataset.local_name).is_dir():
            path = path / dataset.local_name  # the data root was given
        return str(path.resolve())
    if text == dataset.hub_id or text in dataset.aliases:
        return dataset.hub_id
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return text  # owner/name: another hub data set
    raise DataError(
        f"data source {text!r} does not exist (no such file or folder: {path}); "
        f"{dataset.hint()}, or pass --data {dataset.hub_id}"
    )


def is_local(source: str) -> bool:
    """A resolved source that names a local file or folder (not the hub, not synthetic)."""
    return source != SYNTHETIC and Path(source).exists()


def load_hub_dataset(source: str, dataset: DataSet, split: str | None = None) -> Any:
    """``datasets.load_dataset(source, split=split)`` for a resolved hub id or local folder, with
    every failure turned into one DataError."""
    import datasets  # lazy: importing datasets takes about a second

    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as exc:  # noqa: BLE001 - anything from datasets/hub becomes one DataError
        said = first_line(exc)
        if is_local(source):
            raise DataError(
                f"{source} is not a data set folder in hub layout (datasets said: {said})"
                f"{file_hint(Path(source), dataset)}; {dataset.hint()}"
            ) from None
        raise DataError(
            f"could not load {source!r} from the Hugging Face hub ({_why_hub(dataset)}; "
            f"datasets said: {said}); {dataset.hint()}"
        ) from None


def file_hint(folder: Path, dataset: DataSet) -> str:
    """" (to read a file, pass the file itself, e.g. ...)" for a folder that holds files of the
    data set's file suffix; "" otherwise."""
    if not dataset.file_suffix or not folder.is_dir():
        return ""
    try:
        found = sorted(p.name for p in folder.glob(f"*{dataset.file_suffix}"))
    except OSError:
        return ""
    return f" (to read a {dataset.file_suffix} file, pass the file itself, e.g. {folder / found[0]})" if found else ""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters (messages stay one line)."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".strip()[:200]


def _why_hub(dataset: DataSet) -> str:
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        return f"${DATA_DIR_ENV} is not set"
    if local_copy(dataset.local_name) is None:
        return f"${DATA_DIR_ENV}={root} has no {dataset.local_name}/ folder"
    return "--data named the hub"
