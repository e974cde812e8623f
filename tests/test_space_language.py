"""The space language (no Ray): distributions from --set and from space files, --show round trips,
the listing of what runs, one-line refusals, and the configurations a sampling search draws."""

from __future__ import annotations

import importlib
import inspect
import json
import re

import pytest

from raysweep import cli, sweep
from raysweep.search_spaces import Dim, Dist, load_space_file, space_to_dict
from raysweep.studies import STUDIES
from raysweep.sweep import SweepOptions, plan_sweep
from raysweep.sweep.dryrun import planned_configs, what_runs
from raysweep.sweep.plan import draws


def test_set_takes_distributions_and_a_list_stays_a_list() -> None:
    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="optuna", num_samples=4, overrides={
        "lr": "loguniform:1e-4:1e-1", "layers": "int:3:9", "filters": "int:16:256:log", "optimizer": "adam,sgd",
        "dropout": "uniform:0:0.5"}))  # fmt: skip
    space = plan.space
    assert space.dim("lr").dist == Dist("loguniform", 1e-4, 0.1) and space.dim("lr").values == ()
    assert space.dim("layers").dist == Dist("int", 3, 9)
    assert space.dim("filters").dist == Dist("int", 16, 256, log=True)
    assert space.dim("dropout").dist == Dist("uniform", 0.0, 0.5)
    assert space.dim("optimizer") == Dim("optimizer", ("adam", "sgd"), "scientific")
    assert space.dim("weight_decay").role == "nuisance"  # untouched dims keep their role
    assert str(space.dim("filters").dist) == "int(16, 256, log)"
    assert space.dim("lr").dist.cli() == "loguniform:1e-4:1e-1"


def test_tune_lr_samples_a_loguniform_lr_and_the_listings_say_so(capsys) -> None:
    assert cli.main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "lr ~ loguniform(1e-4, 3e-2)" in out and "0.0003/0.001" not in out
    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="optuna", num_samples=6))
    assert what_runs(plan)[0].startswith("6 samples (optuna) of lr ~ loguniform(1e-4, 3e-2), weight_decay∈{0/")
    configs, _ = planned_configs(plan)  # what the dry run times: drawn inside the bounds, extremes first
    assert len(configs) == 6 and {configs[0]["lr"], configs[1]["lr"]} == {1e-4, 3e-2}
    assert all(1e-4 <= c["lr"] <= 3e-2 for c in configs) and len({c["lr"] for c in configs}) == 6


def test_a_staged_ablation_lists_its_stages() -> None:
    plan = plan_sweep(SweepOptions(study="cnn", space="report_ablation", repeats=2))
    lines = what_runs(plan)
    assert lines[0] == "stage 0: the baseline lr=0.001 batch_size=64 filters=32 layers=5, each with seeds 0, 1"
    assert lines[1].startswith("stage 1: lr∈{0.001/0.01/0.1}") and lines[4].startswith("stage 4: layers∈{3/5/7}")
    assert "then lr∈{0.001/0.01/0.1} -> batch_size∈{16/32/64}" in plan.space.summary()


@pytest.mark.parametrize("study, space", [(s, n) for s in STUDIES for n in STUDIES[s].spaces])
def test_show_prints_a_space_file_that_loads_back_equal(study, space, capsys, tmp_path) -> None:
    assert cli.main(["spaces", f"{study}/{space}", "--show"]) == 0
    path = tmp_path / f"{space}.yaml"
    path.write_text(capsys.readouterr().out)
    loaded = load_space_file(path, STUDIES[study].hypers, study)
    assert loaded == STUDIES[study].spaces[space]


def test_space_files_in_yaml_json_and_toml_hold_the_same_space(tmp_path) -> None:
    yaml_text = """study: cnn
description: my lr and depth search
epochs: 2
dims:
  lr: {distribution: loguniform, low: 1e-4, high: 1e-1}   # YAML reads 1e-4 as text: typed by the hyperparameter
  layers: {distribution: int, low: 3, high: 7, role: scientific}
  filters: int:16:64:log
  optimizer: [adam, sgd]
  batch_size: 64
  seed: {values: [0], role: nuisance}
"""
    (tmp_path / "my.yaml").write_text(yaml_text)
    hypers = STUDIES["cnn"].hypers
    space = load_space_file(tmp_path / "my.yaml", hypers, "cnn")
    assert space.name == "my" and space.epochs == 2 and space.dim("lr").dist == Dist("loguniform", 1e-4, 0.1)
    assert space.dim("filters").dist == Dist("int", 16, 64, True) and space.dim("batch_size").values == (64,)
    data = space_to_dict(space, "cnn")
    (tmp_path / "my.json").write_text(json.dumps(data))
    toml = ['study = "cnn"', 'name = "my"', 'description = "my lr and depth search"', "epochs = 2"]
    for name, spec in data["dims"].items():
        toml.append(f"[dims.{name}]")
        toml += [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
    (tmp_path / "my.toml").write_text("\n".join(toml) + "\n")
    assert load_space_file(tmp_path / "my.json", hypers, "cnn") == space
    assert load_space_file(tmp_path / "my.toml", hypers, "cnn") == space
    plan = plan_sweep(SweepOptions(study="cnn", space=str(tmp_path / "my.toml"), search="optuna", num_samples=3))
    assert plan.space == space and plan.epochs == 2


BAD_FILE = {
    "unknown.yaml": ("dims: {lr: [0.1], momentum: [0.9]}", "unknown hyperparameter 'momentum'"),
    "bound.yaml": ("dims: {layers: {distribution: int, low: 3, high: 30}}",
                   "layers ~ int(3, 30): bound layers=30 must be <= 11"),
    "order.json": ('{"dims": {"lr": {"distribution": "loguniform", "low": 0.1, "high": 0.001}}}',
                   "the low bound must be below the high one"),
    "key.yaml": ("dims: {lr: [0.1]}\nepochz: 3", "unknown key 'epochz'"),
    "study.yaml": ("study: pixel\ndims: {lr: [0.1]}", "it is a space of study 'pixel', not 'cnn'"),
    "stage.yaml": ("dims: {lr: loguniform:1e-4:1e-1, seed: [0]}\nstages: [lr]\nbaseline: {lr: 0.001}",
                   "a stage of an ablation runs listed values"),
    "broken.yaml": ("dims: {lr: [0.1", "is not valid YAML"),
    "partial.yaml": ("dims: {lr: [0.1], filters: [8], layers: [3]}",
                     "space 'partial' does not set batch_size, which the study's trials need; add it to the space, "
                     "or --set batch_size=VALUE"),
    "noshape.yaml": ("dims: {lr: [0.1], batch_size: [8]}",  # neither the report's net nor widths
                     "a cnn configuration needs filters and layers (the report's net) or widths"),
}  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "lr=loguniform:1e-4:1e-1"], "grid search runs listed values only: use --search random, qmc or"),
        (["--search", "optuna", "--set", "lr=loguniform:0.1:0.001"], "the low bound must be below the high one"),
        (["--search", "optuna", "--set", "lr=loguniform:1e-4:20"],
         "lr ~ loguniform(1e-4, 2e1): bound lr=20.0 must be <= 10"),
        (["--search", "optuna", "--set", "weight_decay=loguniform:0:0.1"], "a log scale needs a low bound > 0"),
        (["--search", "qmc", "--set", "layers=int:3:30"], "bound layers=30 must be <= 11"),
        (["--search", "qmc", "--set", "layers=uniform:3:9"], "layers is a whole number; draw it with int:LOW:HIGH"),
        (["--search", "qmc", "--set", "layers=int:3:9.5"], "bound '9.5' is not a whole number"),
        (["--search", "qmc", "--set", "optimizer=int:1:2"], "optimizer takes listed values only"),
        (["--search", "qmc", "--set", "lr=loguniform:1e-4"], "write a distribution as loguniform:LOW:HIGH"),
        (["--space", "tune_lr", "--search", "random", "--scheduler", "asha", "--repeats", "2"],
         "ASHA would stop each seed's trial on its own"),
        (["--space", "no/such.yaml"], "space file no/such.yaml does not exist"),
        (["spaces", "cnn", "--show"], "--show prints one space: name it as STUDY/SPACE"),
        *[(["--data", "synthetic", "--space", "{tmp}/" + name], says) for name, (_, says) in BAD_FILE.items()],
    ],
)  # fmt: skip
def test_a_bad_space_gets_one_line_and_exit_2_before_ray(argv, message, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sweep, "init_ray", lambda *a, **k: pytest.fail("Ray started on bad input"))
    for name, (text, _) in BAD_FILE.items():
        (tmp_path / name).write_text(text)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv if argv[0] == "spaces" else ["sweep", "cnn", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("raysweep: error:"), err


def test_num_samples_above_a_finite_space_runs_it_once_and_says_so() -> None:
    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="random", num_samples=10, repeats=2,
                                   overrides={"lr": "0.001,0.01,0.1", "weight_decay": "0"}))  # fmt: skip
    d = draws(plan)
    assert (d.size, d.new, d.trials, d.seeds) == (3, 3, 6, (0, 1))
    assert d.note == "--num-samples 10 is more than the 3 configurations of space 'tune_lr': each runs once"


def test_a_resume_completes_configurations_and_counts_them_toward_num_samples() -> None:
    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="optuna", num_samples=4, repeats=2))
    base = {"batch_size": 64, "filters": 32, "layers": 5, "weight_decay": 0.0, "grad_clip": 1.0, "augment": 1}
    done = [{"config": {**base, "lr": 0.01, "seed": 0}, "score": 0.5},
            {"config": {**base, "lr": 0.01, "seed": 1}, "score": 0.7},  # complete
            {"config": {**base, "lr": 0.02, "seed": 1}, "score": 0.4}]  # one seed missing  # fmt: skip
    unfinished = [{**base, "lr": 0.03, "seed": 0}]  # a checkpoint, no finished seed
    d = draws(plan, done, unfinished)
    assert [c["lr"] for c in d.first] == [0.02, 0.03] and d.new == 1
    assert d.trials == 1 + 2 + 2  # lr 0.02 seed 0, lr 0.03 both seeds, one new configuration x 2 seeds


def test_the_dry_run_lists_distributions_as_distributions(monkeypatch) -> None:
    from raysweep.sweep import dryrun

    monkeypatch.setattr(dryrun, "measure_shape", lambda plan, c, data, seen=None: dryrun.ShapeCost(c, 0.01, 10, 0.1,
                                                                                                   100.0, 1.0))
    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="optuna", num_samples=6, repeats=2))
    lines: list[str] = []
    res = dryrun.dry_run(plan, 2, set(), lambda c: str(sorted(c.items())), "synthetic", say=lines.append)
    assert "  6 samples (optuna) of lr ~ loguniform(1e-4, 3e-2), weight_decay∈{0/0.0001/0.0005}, each with seeds " \
           "0, 1: 12 trials" in lines  # fmt: skip
    assert not any("lr=" in line for line in lines[1:3]) and res["to_run"] == 12  # no made-up lr values listed


def test_a_resume_refuses_a_space_file_edited_or_gone_since_the_sweep_ran(tmp_path) -> None:
    from raysweep.search_spaces import SpaceError, sha256
    from raysweep.sweep import _check_space_file

    path = tmp_path / "mine.yaml"
    path.write_text("dims: {lr: [0.1]}\n")
    recorded = sha256(path.read_bytes())
    _check_space_file(str(path), recorded, "s")  # unchanged: resumes
    path.write_text("dims: {lr: [0.2]}\n")
    with pytest.raises(SpaceError, match="was edited since sweep 's' ran"):
        _check_space_file(str(path), recorded, "s")
    path.unlink()
    with pytest.raises(SpaceError, match="which is gone; the sweep's parent run keeps it as artifact space_file/mine"):
        _check_space_file(str(path), recorded, "s")


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_every_hyperparameter_a_trainable_reads_without_a_default_is_required(study: str) -> None:
    """A space that leaves out what the trainable reads as ``config["name"]`` is refused before Ray
    (``Hyper.required``) instead of failing every trial with a KeyError; and what is required has no
    default, so each is read that way somewhere in the study's code."""
    s = STUDIES[study]
    code = "".join(inspect.getsource(importlib.import_module(m)) for m in _study_modules(s))
    read = set(re.findall(r'\b(?:config|c|cfg)\["(\w+)"\]', code)) & set(s.hypers)
    required = {n for n, h in s.hypers.items() if h.required}
    assert read <= required, f"{study} reads {sorted(read - required)} without a default: mark them required"
    assert required <= read, f"{study} marks {sorted(required - read)} required but reads them with a default"


def _study_modules(s) -> list[str]:
    """The modules that read a study's configs: its trainable's and its pre-flight check's."""
    return [p.split(":")[0] for p in (s.trainable_path, s.check_path, s.task_path) if p]
