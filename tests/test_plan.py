"""Sweep planning as pure functions (no Ray): the staged ablation with seeds, after a resume."""

from __future__ import annotations

import pytest

from raysweep.sweep import SweepOptions, plan_sweep
from raysweep.sweep.plan import config_id, staged_ablation

SCORE = {0.001: 0.50, 0.01: 0.60, 0.1: 0.40}  # by lr; seed 1 scores 0.02 higher


def _record(config: dict, status: str = "TERMINATED") -> dict:
    return {"config": config, "score": SCORE[config["lr"]] + 0.02 * config["seed"], "status": status,
            "key": f"{config['lr']}-{config['seed']}", "metrics": {}}  # fmt: skip


def _space():
    opts = SweepOptions(study="cnn", space="report_ablation", repeats=2,
                        overrides={"batch_size": "64", "filters": "8", "layers": "3"})  # fmt: skip
    return plan_sweep(opts).space


def test_a_candidate_runs_until_every_seed_has_finished_and_wins_by_the_mean() -> None:
    space = _space()
    base = {d.name: d.values[0] for d in space.dims} | space.baseline
    before = [_record({**base, "seed": 0}), _record({**base, "seed": 1}),
              _record({**base, "lr": 0.01, "seed": 0})]  # lr=0.01 finished one of its two seeds, then a crash
    asked: list[list[dict]] = []

    def run_stage(i: int, label: str, todo: list[dict]) -> list[dict]:
        asked.append(todo)
        return [_record(c) for c in todo]

    winners = list(staged_ablation(space, "val_acc", "max", before, run_stage, lambda *a: None))
    (lr_stage,) = asked  # the baseline is complete: only the lr stage runs
    assert sorted((c["lr"], c["seed"]) for c in lr_stage) == [(0.01, 1), (0.1, 0), (0.1, 1)]
    (w,) = winners
    assert (w["param"], w["value"], w["n"]) == ("lr", 0.01, 2)
    assert w["score"] == pytest.approx(0.61) and w["std"] == pytest.approx(0.02**0.5 / 10)  # sample std, not pstdev


def test_a_leaky_candidate_never_wins_a_stage() -> None:
    space = _space()
    done = []

    def run_stage(i: int, label: str, todo: list[dict]) -> list[dict]:
        done.extend(_record(c) for c in todo)
        return [_record(c) for c in todo]

    (w,) = staged_ablation(space, "val_acc", "max", [], run_stage, lambda *a: None, ranked=lambda c: c["lr"] != 0.01)
    assert w["value"] == 0.001  # 0.01 scores best but may not rank
    assert {config_id(t["config"]) for t in done}  # everything ran, the leaky one too


def test_grid_with_num_samples_is_refused_with_a_pointer_to_repeats() -> None:
    from raysweep.search_spaces import SpaceError

    with pytest.raises(SpaceError, match=r"same seed; use --repeats 3"):
        plan_sweep(SweepOptions(study="cnn", num_samples=3))
    assert plan_sweep(SweepOptions(study="cnn", space="tune_lr", search="random", num_samples=3))


def test_resume_takes_a_sweep_folder_as_ray_does(tmp_path) -> None:
    from raysweep.sweep import sweep_name_of

    for folder in ("cnn-quick-20261202-101010", "cnn-quick-20261202-101010-r2", "cnn-x-1-stage3"):
        (tmp_path / folder).mkdir()
    assert sweep_name_of("cnn-quick-20261202-101010") == ("cnn-quick-20261202-101010", None)
    assert sweep_name_of(str(tmp_path / "cnn-quick-20261202-101010-r2")) == ("cnn-quick-20261202-101010",
                                                                            str(tmp_path))  # fmt: skip
    assert sweep_name_of(str(tmp_path / "cnn-x-1-stage3"))[0] == "cnn-x-1"


def test_an_unreadable_storage_path_stops_instead_of_retraining_everything(tmp_path) -> None:
    from raysweep.search_spaces import SpaceError
    from raysweep.sweep import find_checkpoints

    assert find_checkpoints(str(tmp_path / "nothing-yet"), "s", "cnn", "synthetic") == {}  # absent: fresh start
    blocked = tmp_path / "storage"
    blocked.write_text("not a folder: an unmounted or unreadable store")
    with pytest.raises(SpaceError, match="cannot read the sweep's checkpoints under --storage-path"):
        find_checkpoints(str(blocked), "s", "cnn", "synthetic")


RUNTIME_OPTIONS = {"cnn": {"compile": "eager"}, "char_rnn": {"sample_every": 0, "temperature": 0.5},
                   "pixel": {"samples": 0, "workers": 1}}  # fmt: skip


@pytest.mark.parametrize("study", ["cnn", "char_rnn", "pixel"])
def test_every_result_relevant_input_changes_the_trial_key_and_runtime_options_do_not(study: str) -> None:
    from raysweep import tracking
    from raysweep.studies import get_study
    from raysweep.sweep.plan import trial_identity

    base = SweepOptions(study=study)

    def key(opts: SweepOptions, data: str = "synthetic", change: dict | None = None) -> str:
        plan = plan_sweep(opts)
        config = {**configs_of_first(plan), **(change or {})}
        return tracking.trial_key(study, data, config, trial_identity(plan))

    k0 = key(base)
    changed = [key(SweepOptions(study=study, epochs=7)), key(SweepOptions(study=study, patience=9)),
               key(base, data="/other/data")]  # fmt: skip
    changed += [key(SweepOptions(study=study, options={o: 0.2 if o == "val_fraction" else 3}))
                for o in get_study(study).result_options]  # fmt: skip
    first = configs_of_first(plan_sweep(base))
    changed += [key(base, change={name: _other(value)}) for name, value in first.items()]
    assert all(k != k0 for k in changed) and len(set(changed)) == len(changed)
    assert key(SweepOptions(study=study, options=RUNTIME_OPTIONS[study])) == k0  # threads, samples, logging


def configs_of_first(plan) -> dict:
    from raysweep.search_spaces import configs_of

    return configs_of(plan.space)[0]


def _other(value):
    return f"{value}-x" if isinstance(value, str) else value + 1


@pytest.mark.parametrize("search", ["optuna", "qmc", "random"])
def test_a_resumed_optuna_search_starts_from_the_finished_trials(search: str) -> None:
    from raysweep.sweep.plan import draws
    from raysweep.sweep.tuner import SEARCH_ALGS

    plan = plan_sweep(SweepOptions(study="cnn", space="tune_lr", search=search, num_samples=8, repeats=2))
    base = {"batch_size": 64, "filters": 32, "layers": 5, "grad_clip": 1.0, "augment": 1}
    done = [{"config": {**base, "lr": 1e-3, "weight_decay": 0.0, "seed": s}, "score": 0.60 + 0.02 * s} for s in (0, 1)]
    done += [{"config": {**base, "lr": 1e-2, "weight_decay": 1e-4, "seed": 0}, "score": 0.55}]  # a seed missing
    constants, alg = SEARCH_ALGS[search](plan, draws(plan, done))
    trials = alg.inner._ot_study.trials  # the searcher's own Optuna study: what TPE learns from
    assert [t.value for t in trials] == [pytest.approx(0.61)] and trials[0].params["lr"] == 1e-3  # complete: mean
    assert "lr" not in constants and constants["batch_size"] == 64  # the searcher owns what it samples
    assert "seed" not in constants  # every configuration trains with each seed
    first = alg.suggest("t1")  # the configuration missing a seed finishes first, with that seed only
    assert (first["lr"], first["seed"]) == (1e-2, 1) and alg.suggest("t2")["seed"] == 0


@pytest.mark.parametrize("study", ["cnn", "char_rnn", "pixel"])
def test_the_sweep_and_the_dry_run_hand_trials_the_plans_context(study: str, monkeypatch) -> None:
    """One ``trial_context``: what the trials of a sweep train under (patience, stop metric, epochs,
    the user's options and the resource options) is what ``--dry-run`` times."""
    from raysweep import study as study_module
    from raysweep.studies import get_study
    from raysweep.sweep import dryrun
    from raysweep.sweep.plan import SweepPlan

    plan = plan_sweep(SweepOptions(study=study, epochs=3, patience=2, amp="off", options=RUNTIME_OPTIONS[study]))
    ctx = plan.trial_context("synthetic", identity={"epochs": 3})
    s = get_study(study)
    assert (ctx.study, ctx.data, ctx.epochs, ctx.patience, ctx.amp) == (study, "synthetic", 3, 2, "off")
    assert (ctx.metric, ctx.mode, ctx.stop_metric, ctx.stop_mode) == (s.metric, s.mode, s.stop_metric, s.stop_mode)
    assert ctx.options == {**RUNTIME_OPTIONS[study], **plan.resources.options} and ctx.identity == {"epochs": 3}

    seen = []
    monkeypatch.setattr(SweepPlan, "trial_context", lambda self, data, **kw: seen.append(data) or ctx)
    monkeypatch.setattr(study_module, "resolve", lambda path: lambda *a: (_ for _ in ()).throw(RuntimeError("built")))
    import torch

    threads = torch.get_num_threads()  # measure_shape sets the trial's
    try:
        with pytest.raises(RuntimeError, match="built"):  # the dry run asked the plan, then built its task
            dryrun.measure_shape(plan, configs_of_first(plan), "synthetic")
    finally:
        torch.set_num_threads(threads)
    assert seen == ["synthetic"]


NOISY = {0.001: (0.50, 0.52, 0.51), 0.01: (0.53, 0.50, 0.55), 0.1: (0.60, 0.61, 0.62)}  # by lr, seeds 0, 1, 2


def _stage(lrs: str, scores: dict) -> tuple[list[dict], list[str]]:
    space = plan_sweep(SweepOptions(study="cnn", space="report_ablation", repeats=3,
                                    overrides={"lr": lrs, "batch_size": "64", "filters": "8", "layers": "3"})).space
    said: list[str] = []

    def run_stage(i: int, label: str, todo: list[dict]) -> list[dict]:
        return [{"config": c, "score": scores[c["lr"]][c["seed"]], "status": "TERMINATED", "key": f"{c}",
                 "metrics": {}} for c in todo]  # fmt: skip

    return list(staged_ablation(space, "val_acc", "max", [], run_stage, said.append)), said


def test_a_stage_winner_within_seed_noise_is_marked_not_resolved_and_still_advances_by_the_mean() -> None:
    (w,), said = _stage("0.001,0.01", NOISY)
    assert (w["value"], w["vs"], w["vs_role"], w["verdict"], w["resolved"]) == (
        0.01, 0.001, "replaced", "within seed noise", False)  # fmt: skip
    # hand-computed: paired differences .03 -.02 .04 -> mean .01667, sd .03215, t(2) = 4.3027
    assert w["diff"] == pytest.approx(0.016667, abs=1e-6) and w["high"] - w["diff"] == pytest.approx(0.07986, abs=1e-4)
    assert "stage 1 winner: lr=0.01 (val_acc 0.5267 ± 0.0252 (n=3))" in said
    line = said[-1]
    assert "vs lr=0.001 (replaced): +0.0167 [95% CI -0.0632, +0.0965], paired over 3 seeds: within seed noise" in line
    assert "seeds each would resolve" in line and line.endswith("not resolved (advances by the mean)")


def test_a_stage_winner_beyond_seed_noise_is_better_and_resolved() -> None:
    (w,), said = _stage("0.001,0.1", NOISY)
    # differences .10 .09 .11: mean .10, sd .01, half-width 4.3027 * .01 / sqrt(3) = .02484
    assert (w["value"], w["verdict"], w["resolved"]) == (0.1, "better", True)
    assert (w["low"], w["high"]) == (pytest.approx(0.07516, abs=1e-5), pytest.approx(0.12484, abs=1e-5))
    assert said[-1].endswith("paired over 3 seeds: better; resolved")


def test_a_tie_keeps_the_current_value_and_is_never_a_win() -> None:
    (w,), said = _stage("0.001,0.01", {0.001: (0.5, 0.6, 0.7), 0.01: (0.6, 0.5, 0.7)})
    assert (w["value"], w["vs"], w["vs_role"], w["resolved"]) == (0.001, 0.01, "runner-up", False)
    assert "within seed noise" in said[-1] and "not resolved" in said[-1]
