"""The statistics the comparisons rest on, on constructed cases with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from medbench import stats


def test_clopper_pearson_at_zero_and_n():
    """A proportion at 0 is not [0, 0]: the exact upper bound is 1 - 0.025^(1/n)."""
    assert stats.clopper_pearson(0, 1273) == (0.0, pytest.approx(1 - 0.025 ** (1 / 1273)))
    assert stats.clopper_pearson(3009, 3009) == (pytest.approx(0.025 ** (1 / 3009)), 1.0)
    assert stats.proportion_ci(0, 3009)[1] == "clopper_pearson" and stats.proportion_ci(5, 30)[1] == "wilson"
    (low, high), method = stats.mean_ci(np.zeros(3009), seed=0)
    assert method == "clopper_pearson" and low == 0.0 and high > 0.001


def test_small_samples_get_wilson_not_a_narrow_bootstrap():
    (low, high), method = stats.mean_ci([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], seed=0)
    assert method == "wilson" and (low, high) == pytest.approx(stats.wilson_interval(3, 10))


def test_exact_sign_flip_equals_enumerating_every_sign():
    rng = np.random.default_rng(1)
    for _ in range(5):
        d = rng.integers(-4, 5, size=13) / 4
        observed = abs(d.sum())
        flips = [abs(sum(s * abs(x) for s, x in zip(signs, d))) for signs in itertools.product((-1, 1), repeat=13)]
        expected = sum(f >= observed - 1e-12 for f in flips) / len(flips)
        assert stats.sign_flip_exact(d) == pytest.approx(expected, abs=1e-12)


def test_float_noise_differences_count_as_ties_in_the_exact_test():
    """Means over seeds of means over rotations differ by ~1e-17 where they are equal: such a difference is a tie,
    not a zero-size step (one of which once made every p exactly 0)."""
    rng = np.random.default_rng(1)
    d = rng.integers(-3, 4, 300) / 15
    noisy = d.copy()
    noisy[d == 0] = 1e-17
    assert stats.sign_flip_exact(noisy) == pytest.approx(stats.sign_flip_exact(d), rel=1e-9)
    assert 0 < stats.sign_flip_exact(noisy) <= 1
    assert stats.sign_flip_exact(np.full(5, 1e-17)) == 1.0


def test_the_exact_test_resolves_p_values_no_resampling_could():
    """10,000 resamples cannot give a p below 1e-4; the exact test gives the true, far smaller one."""
    d = np.full(200, 0.2)
    assert stats.sign_flip_exact(d) == pytest.approx(2 * 0.5**200)
    assert stats.sign_flip_p(d, seed=0) == pytest.approx(1 / 10_001)


def test_paired_test_picks_mcnemar_for_binary_and_the_exact_sign_flip_for_means():
    a = np.array([1, 0, 1, 1, 0, 0, 1, 0] * 10, dtype=float)
    b = np.roll(a, 1)
    assert stats.paired_test(a, b, 0)[0] == "mcnemar_exact"
    assert stats.paired_test(a / 5 * 2, b / 5, 0)[0] == "sign_flip_exact"
    assert stats.paired_test(a * 0.3333, b * 0.7071, 0)[0] == "sign_flip_1e6"


def test_bounds_mdd_and_tost():
    """MDD = (z_.975 + z_.8) x SE; TOST declares equivalence only when the difference is well inside the margin."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 4000).astype(float)
    same = stats.paired_bounds(a, a.copy(), margin=0.02)
    assert same["se"] == 0 and same["mdd80"] == 0 and same["equivalent"]
    b = a.copy()
    b[:400] = 1 - b[:400]  # 10% of the answers flipped: a real difference, not equivalence
    bounds = stats.paired_bounds(a, b, margin=0.02)
    d = b - a
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert bounds["se"] == pytest.approx(se) and bounds["mdd80"] == pytest.approx(2.801585 * se, rel=1e-4)
    noise = rng.integers(0, 2, 4000).astype(float)
    assert not stats.paired_bounds(a, noise, margin=0.02)["equivalent"]  # unrelated answers: nothing can be shown
