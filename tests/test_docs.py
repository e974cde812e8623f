"""The README is for users and BENCHMARKS.md keeps the history: the README's sections come in the
order a new user needs them, its times are measured ones, and re-rendering BENCHMARKS.md from
results.json keeps its hand-written part."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
SECTIONS = ["Quick start", "Studies", "Your own search", "Reports", "The cluster", "Adding a study", "Layout"]


def test_readme_sections_come_in_a_users_order() -> None:
    heads = re.findall(r"^## (.+)$", README, re.M)
    assert [h for h in heads if h in SECTIONS] == SECTIONS, heads
    assert "\npip install -e '.[test]' && python -m pytest -q\n" in README  # CI runs this line verbatim
    own = README[README.index("## Your own search") : README.index("## Reports")]
    assert "lr=loguniform:1e-4:1e-1" in own and "--show" in own and "raysweep audit" in own  # the space language
    assert README.index("## Honest comparisons") > README.index("## Reports")


def test_readme_keeps_headline_figures_and_leaves_the_history_to_benchmarks_md() -> None:
    bench = README[README.index("## Benchmarks") :]
    assert "(BENCHMARKS.md)" in bench and len(re.findall(r"^\|", bench, re.M)) <= 10  # one short table
    for history in ("dirty", "RAY_prestart_worker_first_driver", "were probed", "2c221e2", "(not kept"):
        assert history not in README, history
    assert "Where the sweep's extra time goes was probed further" in (REPO / "BENCHMARKS.md").read_text()


def test_readme_states_measured_times_not_vague_ones() -> None:
    for vague in ("a few minutes", "~2 min", "minutes on a laptop"):
        assert vague not in README, vague
    assert "95–100 s" in README and "90–100 s" in README and "85–100 s" in README  # cnn, char_rnn, pixel quick


def test_render_keeps_the_hand_written_part(tmp_path: Path) -> None:
    from benchmarks.run import HAND_WRITTEN, main

    shutil.copy(REPO / "benchmarks" / "results.json", tmp_path / "results.json")
    history = f"{HAND_WRITTEN}\n\n# History\n\nA probe that was not kept.\n"
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nstale figures\n\n" + history)
    assert main(["--render", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "stale figures" not in text and "## sweep_overhead" in text  # the figures are rendered anew ...
    assert text.endswith(history)  # ... and the history is kept, once
    assert main(["--render", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "BENCHMARKS.md").read_text() == text
    assert HAND_WRITTEN in (REPO / "BENCHMARKS.md").read_text()
