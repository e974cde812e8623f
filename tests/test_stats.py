"""raysweep.stats against values computed by hand (and, for Welch, against scipy's own t-test)."""

from __future__ import annotations

import math

import pytest

from raysweep.stats import VERDICTS, compare, fmt_comparison, fmt_spread, spread


def test_spread_is_the_sample_std_not_the_population_one():
    s = spread([0.70, 0.72])
    assert s.mean == pytest.approx(0.71)
    assert s.std == pytest.approx(0.0141421356, rel=1e-6)  # sqrt(2 * 0.01**2 / 1); pstdev would be 0.01
    assert s.n == 2
    assert fmt_spread(s) == "0.7100 ± 0.0141 (n=2)"
    assert fmt_spread(spread([0.5])) == "0.5000 (n=1)"
    assert spread([1.0, float("nan"), None]).n == 1


def test_paired_interval_by_hand_within_noise_with_seeds_needed():
    # per-seed differences 0.02, 0.03, 0.01: mean 0.02, sd 0.01; t(0.975, 2) = 4.302653
    c = compare({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.78, 1: 0.79, 2: 0.80}, "max")
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert c.paired and c.n == 3
    assert c.diff == pytest.approx(0.02)
    assert (c.low, c.high) == (pytest.approx(0.02 - half, abs=1e-6), pytest.approx(0.02 + half, abs=1e-6))
    assert c.verdict == "within seed noise"
    assert c.seeds_needed == 4  # t(0.975, 3) * 0.01 / 2 = 0.0159 < 0.02; with 3 seeds 0.0248 is not
    assert "about 4 seeds" in fmt_comparison(c)


def test_paired_better_and_worse_follow_the_mode():
    cand, ref = {0: 0.80, 1: 0.821, 2: 0.799}, {0: 0.78, 1: 0.80, 2: 0.78}  # diffs 0.02, 0.021, 0.019
    assert compare(cand, ref, "max").verdict == "better"
    assert compare(cand, ref, "min").verdict == "worse"  # a higher loss is worse
    assert compare(ref, cand, "max").verdict == "worse"
    assert compare(cand, ref, "max").seeds_needed is None


def test_unpaired_seeds_use_welch_as_scipy_computes_it():
    from scipy.stats import ttest_ind

    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]
    c = compare(a, b, "max")
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert not c.paired
    assert c.diff == pytest.approx(-3.5)
    assert (c.low, c.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert c.verdict == "worse"
    # seeds that do not pair (different seed sets) fall back to Welch too
    assert not compare({0: 1.0, 1: 2.0, 2: 3.0}, {5: 4.0, 6: 5.0, 7: 6.0, 8: 7.0}, "max").paired


def test_one_seed_cannot_tell_and_every_verdict_is_reachable():
    one = compare([0.9], [0.8, 0.81], "max")
    assert one.verdict == "one seed: cannot tell"
    assert math.isnan(one.low)
    assert fmt_comparison(one) == "+0.0950: one seed: cannot tell"
    seen = {one.verdict, compare([1, 2, 3], [4, 5, 6, 7], "max").verdict,
            compare([4, 5, 6, 7], [1, 2, 3], "max").verdict, compare([1.0, 2.0], [1.1, 2.1], "max").verdict}
    assert seen == set(VERDICTS)
