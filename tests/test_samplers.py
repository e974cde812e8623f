"""Sampling searches (random, qmc, optuna) train each configuration once, with every seed of
--repeats, one MLflow run per trial; a space file's content lands in the parent run."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import fakes
import pytest

from raysweep import tracking
from raysweep.sweep import SweepOptions, plan_sweep, run_sweep
from raysweep.sweep.plan import config_id, draws

LRS = "0.0001,0.0003,0.001,0.003,0.01,0.03,0.1"


class _Repeating:
    """A stand-in inner searcher that proposes lr 0.1, 0.1, 0.2, 0.1, 0.2, ... and records what it is told."""

    def __init__(self) -> None:
        self.told: dict[str, float | None] = {}
        self.n = 0

    def suggest(self, trial_id: str) -> dict:
        self.n += 1
        return {"lr": 0.1 if self.n % 2 else 0.2}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.told[trial_id] = None if result is None else result["val_acc"]

    def set_search_properties(self, *a, **k) -> bool:
        return False


def test_a_repeated_proposal_is_never_trained_and_the_sampler_gets_the_mean() -> None:
    from raysweep.sweep.searcher import SeededSearcher

    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="optuna", num_samples=3, repeats=2,
                                   overrides={"lr": "0.1,0.2,0.3", "weight_decay": "0"}))  # fmt: skip
    inner = _Repeating()
    constants = {"batch_size": 64, "filters": 32, "layers": 5, "weight_decay": 0.0, "grad_clip": 1.0, "augment": 1}
    s = SeededSearcher(inner, draws(plan), constants, {"lr": (0.1, 0.2, 0.3)}, "val_acc", "max")
    first = [s.suggest(f"t{i}") for i in range(2)]
    assert [(c["lr"], c["seed"]) for c in first] == [(0.1, 0), (0.1, 1)]  # one configuration, both seeds
    s.on_trial_complete("t0", {"best_val_acc": 0.5})
    s.on_trial_complete("t1", {"best_val_acc": 0.7})
    assert inner.told == {"config_1": pytest.approx(0.6)}  # the mean over its seeds
    nxt = [s.suggest(f"t{i}") for i in range(2, 4)]
    assert [(c["lr"], c["seed"]) for c in nxt] == [(0.2, 0), (0.2, 1)]
    last = [s.suggest(f"t{i}") for i in range(4, 6)]  # the sampler keeps repeating: 0.3 comes from the space
    assert [(c["lr"], c["seed"]) for c in last] == [(0.3, 0), (0.3, 1)] and s.suggest("t6") == "FINISHED"
    assert inner.told["config_3"] == pytest.approx(0.6)  # a repeat of 0.1: told its recorded score, not trained
    s.on_trial_complete("t2", {"best_val_acc": 0.2})
    s.on_trial_complete("t3", {"val_acc": 0.4})
    assert inner.told["config_2"] == pytest.approx(0.3) and inner.told["config_4"] == pytest.approx(0.3)


def _opts(tmp_path, **kw) -> SweepOptions:
    return SweepOptions(**{"study": "cnn", "data": "synthetic", "epochs": 1, "storage_path": str(tmp_path / "r"),
                           "space": "tune_lr", **kw})  # fmt: skip


def test_the_issues_optuna_command_trains_six_distinct_runs_and_names_the_best(ray_session, tracking_uri, tmp_path,
                                                                              capsys) -> None:  # fmt: skip
    # raysweep sweep cnn --space tune_lr --search optuna --num-samples 6 --set lr=... --set weight_decay=0
    res = run_sweep(_opts(tmp_path, search="optuna", num_samples=6, overrides={"lr": LRS, "weight_decay": "0"}),
                    fakes.scripted_trainable)  # fmt: skip
    out = capsys.readouterr().out
    runs = tracking.child_runs(tracking_uri, res.tracking)
    assert res.status == "FINISHED" and len(res.trials) == 6 and len(runs) == 6
    assert len({r.data.params["lr"] for r in runs}) == 6
    assert len({r.data.tags[tracking.KEY_TAG] for r in runs}) == 6
    assert all(r.data.tags["raysweep.attempts"] == "1" for r in runs)
    c = tracking.client(tracking_uri)
    assert all(len(c.get_metric_history(r.info.run_id, "val_acc")) == 1 for r in runs)  # each epoch logged once
    assert f"best run    : {res.best['run_id']}" in out and res.best["run_id"] in {r.info.run_id for r in runs}


@pytest.mark.parametrize("search", ["optuna", "random", "qmc"])
def test_repeats_train_every_configuration_with_the_same_seeds(search, ray_session, tracking_uri, tmp_path) -> None:
    res = run_sweep(_opts(tmp_path, search=search, num_samples=3, repeats=2, quiet=True), fakes.scripted_trainable)
    runs = tracking.child_runs(tracking_uri, res.tracking)
    assert res.status == "FINISHED" and len(runs) == 6
    seeds = defaultdict(set)
    for r in runs:
        config = {k: v for k, v in r.data.params.items() if k in ("lr", "weight_decay", "seed")}
        seeds[config_id(config)].add(int(config["seed"]))
    assert len(seeds) == 3 and all(s == {0, 1} for s in seeds.values()), dict(seeds)


def test_a_yaml_space_sweeps_with_optuna_and_the_parent_run_holds_it(ray_session, tracking_uri, tmp_path) -> None:
    text = ("study: cnn\ndescription: lr and width\nepochs: 1\ndims:\n"
            "  lr: {distribution: loguniform, low: 1e-4, high: 1e-1}\n"
            "  filters: {distribution: int, low: 8, high: 32}\n"
            "  batch_size: 64\n  layers: 3\n  seed: {values: [0], role: nuisance}\n")  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    res = run_sweep(_opts(tmp_path, space=str(path), search="optuna", num_samples=3, quiet=True),
                    fakes.scripted_trainable)  # fmt: skip
    runs = tracking.child_runs(tracking_uri, res.tracking)
    assert res.status == "FINISHED" and len(runs) == 3
    assert all(1e-4 <= float(r.data.params["lr"]) <= 0.1 and 8 <= int(r.data.params["filters"]) <= 32 for r in runs)
    c = tracking.client(tracking_uri)
    parent = c.get_run(res.tracking.parent_run_id)
    assert parent.data.tags["raysweep.space_file_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert parent.data.params["space"] == "mine" and parent.data.params["space_file"] == "mine.yaml"
    saved = c.download_artifacts(parent.info.run_id, "space_file/mine.yaml", str(tmp_path / "a"))
    assert open(saved).read() == text
    effective = c.download_artifacts(parent.info.run_id, "space.yaml", str(tmp_path / "b"))
    assert hashlib.sha256(open(effective, "rb").read()).hexdigest() == parent.data.tags["raysweep.space_sha256"]
    assert plan_sweep(SweepOptions(study="cnn", space=effective, search="optuna")).space.dims == \
        plan_sweep(SweepOptions(study="cnn", space=str(path), search="optuna")).space.dims  # fmt: skip
