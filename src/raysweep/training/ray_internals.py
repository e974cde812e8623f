"""The only home of Ray APIs that are private or documented as unstable, written for Ray 2.60.0.

Each has no public replacement that does the job (checked against Ray 2.60):

- ``internal_kv`` (``ray.experimental.internal_kv._internal_kv_put/get/del``): the GCS key-value
  store, where a trial's Ray Train worker records its placement group for the sweep driver.
  The public alternative, a named actor, would have to be detached (the trial process that could
  own it is what Tune kills), so it would outlive the sweep on a shared cluster and cost a worker
  process; a KV entry is one small value, deleted when the trial ends.
- ``tune.get_context().get_storage()`` (a DeveloperAPI whose ``StorageContext`` "may change without
  notice between minor versions"): where Tune stores this trial, which the Train run must share.
  ``get_trial_dir()`` is no substitute: it is the local working folder, not the storage path.

``tests/test_ray_internals.py`` exercises each one and says what moved when a Ray upgrade breaks it;
pyproject pins ray to the minor range it passes on.
"""

from __future__ import annotations

from typing import Any

RAY_VERSION = "2.60.0"  # the version this module was written and tested for


def kv_put(key: str, value: str) -> None:
    """Store ``value`` under ``key`` in the cluster's GCS key-value store (overwrites)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, value, overwrite=True)


def kv_get(key: str) -> str | None:
    """The value stored under ``key``, None when there is none."""
    from ray.experimental.internal_kv import _internal_kv_get

    found = _internal_kv_get(key)
    return found.decode() if found else None


def kv_del(key: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(key)


def trial_storage() -> dict[str, Any]:
    """Inside a Tune trial: ``RunConfig`` keywords (``name``, ``storage_path``,
    ``storage_filesystem``) that put a Ray Train run in this trial's own folder."""
    from ray import tune

    storage = tune.get_context().get_storage()
    return {
        "name": storage.trial_dir_name,
        "storage_path": f"{storage.storage_fs_path.rstrip('/')}/{storage.experiment_dir_name}",
        "storage_filesystem": storage.storage_filesystem,
    }
