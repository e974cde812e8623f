"""Decode once per node: arrays cached on disk as .npy and shared by memory-mapping.

Why: decoding 60,000 images costs seconds; every trial on a node maps the same files instead, so
the operating system keeps one copy in memory however many trials run (no per-trial copy).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from filelock import FileLock


def cache_root() -> Path:
    """``$RAYSWEEP_CACHE_DIR``, else ``~/.cache/raysweep``."""
    root = os.environ.get("RAYSWEEP_CACHE_DIR") or Path.home() / ".cache" / "raysweep"
    return Path(root)


def source_fingerprint(source: str) -> str:
    """Changes when a local source's files change (path, size, mtime); the id for a hub source."""
    path = Path(source)
    if not path.exists():
        return source
    parts = [str(path.resolve())]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        parts.append(f"{f.relative_to(path) if f != path else f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def cached_arrays(
    key: str, decode: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays for ``key``, memory-mapped read-only; ``decode()`` runs once per node under a lock.

    Returns the arrays and the cache's metadata (``content_sha256`` of all arrays' bytes, so a
    sweep can record exactly which data it saw).
    """
    folder = cache_root() / hashlib.sha1(key.encode()).hexdigest()[:16]
    meta_path = folder / "meta.json"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not meta_path.exists():
            arrays = decode()
            digest = hashlib.sha256()
            for name in sorted(arrays):
                np.save(folder / f"{name}.npy", np.ascontiguousarray(arrays[name]))
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(arrays[name]).tobytes())
            meta = {"key": key, "arrays": sorted(arrays), "content_sha256": digest.hexdigest()}
            tmp = meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(meta, indent=1))
            tmp.replace(meta_path)  # written last: a crash mid-decode leaves no half cache
    meta = json.loads(meta_path.read_text())
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    return arrays, meta
