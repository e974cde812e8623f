"""The private Ray APIs ``raysweep.training.ray_internals`` relies on still exist and behave.

When one of these fails after a Ray upgrade, the message names what moved: fix that function in
``ray_internals.py`` (or find a public replacement), then update ``RAY_VERSION`` and the ray pin.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from raysweep.training import ray_internals


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_installed_ray_is_the_version_the_private_apis_were_checked_on() -> None:
    import ray

    assert _minor(ray.__version__) == _minor(ray_internals.RAY_VERSION), (
        f"ray {ray.__version__} is installed, ray_internals was written for {ray_internals.RAY_VERSION}: "
        "re-check every function in src/raysweep/training/ray_internals.py against this Ray, then update "
        "RAY_VERSION and the ray pin in pyproject.toml"
    )


@pytest.mark.parametrize(
    "module, names",
    [("ray.experimental.internal_kv", ["_internal_kv_put", "_internal_kv_get", "_internal_kv_del"])],
)
def test_private_names_are_importable(module: str, names: list[str]) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"Ray moved the module {module} (used by ray_internals.kv_*): {exc}")
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"Ray removed {missing} from {module} (used by ray_internals.kv_*)"


def test_the_storage_context_has_the_fields_trial_storage_reads() -> None:
    from ray import tune

    gone = "Ray removed TuneContext.get_storage (ray_internals.trial_storage)"
    assert hasattr(tune.get_context(), "get_storage"), gone
    from ray.train._internal.storage import StorageContext  # where 2.60 defines what get_storage returns

    s = StorageContext(storage_path="/tmp/raysweep-probe", experiment_dir_name="exp", trial_dir_name="trial")
    missing = [a for a in ("trial_dir_name", "storage_fs_path", "experiment_dir_name", "storage_filesystem")
               if not hasattr(s, a)]  # fmt: skip
    assert not missing, f"Ray's StorageContext lost {missing} (read by ray_internals.trial_storage)"


def test_kv_round_trip(ray_session) -> None:
    key = "raysweep:test-ray-internals"
    ray_internals.kv_put(key, "a")
    ray_internals.kv_put(key, "b")  # overwrites
    assert ray_internals.kv_get(key) == "b", "internal_kv put/get no longer round-trip (ray_internals.kv_*)"
    ray_internals.kv_del(key)
    assert ray_internals.kv_get(key) is None, "internal_kv del no longer deletes (ray_internals.kv_del)"


def test_placement_group_handle_rebuilds_from_its_hex_id(ray_session) -> None:
    """``release_worker_group`` rebuilds the handle from what the worker recorded."""
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

    pg = placement_group([{"CPU": 0.1}])
    try:
        assert PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg.id.hex()))) == pg
    finally:
        remove_placement_group(pg)


def _report_storage(config: dict) -> None:
    from ray import tune

    where = ray_internals.trial_storage()
    fs = where.pop("storage_filesystem")
    Path(config["out"]).write_text(json.dumps({**where, "fs": fs.type_name}))
    tune.report({"done": 1})


def test_trial_storage_names_the_trials_own_folder(ray_session, tmp_path) -> None:
    from ray import tune

    out = tmp_path / "where.json"
    tuner = tune.Tuner(_report_storage, param_space={"out": str(out)},
                       run_config=tune.RunConfig(name="probe", storage_path=str(tmp_path / "ray")))  # fmt: skip
    (result,) = tuner.fit()
    where = json.loads(out.read_text())
    trial_dir = Path(result.path)
    assert (where["name"], where["fs"]) == (trial_dir.name, "local"), f"trial_storage() gave {where}"
    assert Path(where["storage_path"]) == trial_dir.parent, f"trial_storage() gave {where}, trial in {trial_dir}"
