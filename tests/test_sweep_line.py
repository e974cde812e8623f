"""The sweep's own lines tell the truth: the ETA of trials that can really run at once, one epoch
count in the header, and a trial that gets the CPUs no other trial of its sweep can use."""

from __future__ import annotations

import re

import fakes

from raysweep.sweep import SweepOptions, run_sweep
from raysweep.sweep.placement import auto_cpus, less_held
from raysweep.sweep.summary import sweep_eta


def _nodes(*cpus: float, gpus: float = 0.0) -> list[dict[str, float]]:
    return [{"CPU": c, "GPU": gpus} for c in cpus]


def test_auto_cpus_gives_each_trial_what_no_other_trial_can_use() -> None:
    assert auto_cpus(1, _nodes(2)) == 2  # the README's one-trial recipe: both CPUs, not 1 of 2
    assert auto_cpus(2, _nodes(2)) == 1 and auto_cpus(3, _nodes(2)) == 1
    assert auto_cpus(3, _nodes(16)) == 5  # 15 of 16 used; 6 each would run only 2 at once
    assert auto_cpus(4, _nodes(8), max_concurrent=1) == 8  # one at a time: all of them
    assert auto_cpus(1, _nodes(1, 1)) == 1  # a trial lives on one node
    assert auto_cpus(3, _nodes(4, 8)) == 4  # 4+4+4 over the two nodes
    assert auto_cpus(10, _nodes(8, gpus=4), gpus=1) == 2  # GPUs bound it to 4 at once
    assert auto_cpus(2, _nodes(8), gpus=1) == 1  # nothing fits: 1, and check_resources refuses
    # a CPU share held by something else (an actor left by an earlier job) is not the trial's to take
    assert auto_cpus(1, less_held(_nodes(2), {"CPU": 1.9})) == 1
    assert less_held(_nodes(4, 8), {"CPU": 10.0, "GPU": 0.0}) == [{"CPU": 4.0, "GPU": 0.0}, {"CPU": 6.0, "GPU": 0.0}]


def test_sweep_eta_counts_only_the_trials_that_can_run_at_once() -> None:
    assert sweep_eta([6], 2) == 6  # one trial alone: its own ETA, not half of it
    assert sweep_eta([6, 6, 6], 2) == 12
    assert sweep_eta([2, 6, 6], 2) == 8  # the third starts when the first ends
    assert sweep_eta([4, 4, 4, 4], 8) == 4
    assert sweep_eta([], 2) == 0


def test_a_one_trial_sweep_trains_on_every_cpu_and_its_lines_agree(ray_session, tracking_uri, tmp_path,
                                                                    capsys) -> None:  # fmt: skip
    opts = SweepOptions(study="cnn", space="quick", data="synthetic", epochs=3, storage_path=str(tmp_path / "ray"),
                        overrides={"filters": "8", "layers": "3"}, options={"epoch_s": 1.0})  # fmt: skip
    res = run_sweep(opts, fakes.scripted_trainable)
    out = capsys.readouterr().out
    assert res.status == "FINISHED"
    assert res.trials[0]["metrics"]["threads"] == 2  # 2 CPUs held: torch trained with 2 threads
    assert "resources: each trial 2 CPU and 0 GPU; 1 such trial(s) fit this cluster at once" in out
    header = next(line for line in out.splitlines() if line.startswith("sweep "))
    assert "3 epochs per trial" in header and re.findall(r"(\d+) epochs", header) == ["3", "3"], header
    lines = out.splitlines()
    pairs = [(a, b) for a, b in zip(lines, lines[1:], strict=False) if re.match(r"  \S+ epoch \d/3 ", a)]
    assert len(pairs) == 3
    etas = [(a.split("ETA ")[1].split("  ")[0], b.split("ETA ")[1].split(" (")[0]) for a, b in pairs]
    assert etas[0][0] != "0 s" and all(b.startswith("  sweep: ") for _, b in pairs)
    assert all(trial == sweep for trial, sweep in etas), etas  # the sweep's ETA is its one trial's
