"""cluster.yaml passes Ray's own cluster-config validation (the schema `ray up` uses)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(_config())  # fills provider defaults as `ray up` does
    validate_config(config)
    assert config["head_node_type"] == "head"
    assert config["available_node_types"]["gpu_worker"]["min_workers"] == 0
    with pytest.raises(jsonschema.ValidationError, match="'many' is not of type 'integer'"):  # the check is live
        validate_config({**config, "max_workers": "many"})


def test_nothing_is_opened_to_the_world() -> None:
    config = _config()
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]
    assert all(not r["CidrIp"].endswith("/0") for rule in rules for r in rule["IpRanges"])
    head_cmds = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmds and "0.0.0.0" not in head_cmds
    assert "mlflow server" in head_cmds and "--artifacts-destination s3://" in head_cmds


def test_the_heads_mlflow_server_keeps_its_runs_in_postgresql() -> None:
    """Many trials log at once on a cluster: SQLite would lock, PostgreSQL takes them (see test_cluster)."""
    from sqlalchemy.engine import make_url

    config = _config()
    setup = " ".join(config["head_setup_commands"])
    assert "apt-get install -y -q postgresql" in setup and "createdb -O $(whoami) mlflow" in setup
    assert "pip install psycopg2-binary" in setup  # MLflow's driver for it
    start = " ".join(config["head_start_ray_commands"])
    assert "sqlite" not in start
    uri = start.split("--backend-store-uri ")[1].split()[0].strip('"')
    url = make_url(uri)
    assert (url.drivername, url.database, url.query["host"]) == ("postgresql+psycopg2", "mlflow", "/var/run/postgresql")
