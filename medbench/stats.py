"""Uncertainty for per-question 0/1 scores: Wilson and bootstrap intervals, McNemar's exact test.

Every function takes its seed explicitly, so a report rebuilt from the same results is the same
byte for byte.
"""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 2000
# Resampling index blocks are capped at this many entries, so a pooled KorMedMCQA vector
# (3,009 questions x 2,000 resamples) never needs one large array at once.
_BLOCK_ENTRIES = 2_000_000


def _resampled_means(values: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    n = len(values)
    rng = np.random.default_rng(seed)
    per_block = max(1, _BLOCK_ENTRIES // n)
    means = []
    for start in range(0, resamples, per_block):
        idx = rng.integers(0, n, size=(min(per_block, resamples - start), n))
        means.append(values[idx].mean(axis=1))
    return np.concatenate(means)


def bootstrap_ci(scores, seed: int, resamples: int = RESAMPLES, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-question scores; (nan, nan) when empty."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    means = _resampled_means(values, seed, resamples)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def paired_bootstrap_ci(
    scores_a, scores_b, seed: int, resamples: int = RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Interval of mean(b) - mean(a), resampling questions (not runs) so the pairing is kept."""
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.size} and {b.size}")
    return bootstrap_ci(b - a, seed, resamples, level)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a right only, b right only).

    Under the null each discordant question is a fair coin, so the p-value is twice the smaller
    binomial tail. Exact integer sums: no float underflow before the final division.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def mean_stderr(scores) -> float:
    """Standard error of a mean with the sample (n-1) deviation, as lm-eval reports it."""
    values = np.asarray(scores, dtype=float)
    if values.size < 2:
        return math.nan
    return float(values.std(ddof=1) / math.sqrt(values.size))


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval: honest at small n and near 0 or 1, unlike ±1.96·stderr."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def sign_flip_p(differences, seed: int, resamples: int = 10_000) -> float:
    """Two-sided paired permutation test of mean(differences) = 0 (per-question differences of scores
    in [0, 1], e.g. position-debiased accuracies, where McNemar's test does not apply).

    Each resample flips the sign of every difference at random; p = (1 + #{|mean*| >= |mean|}) / (1 + R),
    never 0, and the same for the same seed.
    """
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    per_block = max(1, _BLOCK_ENTRIES // len(d))
    for start in range(0, resamples, per_block):
        signs = rng.choice((-1.0, 1.0), size=(min(per_block, resamples - start), len(d)))
        extreme += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (1 + extreme) / (1 + resamples)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (family-wise error over all of them)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def clopper_pearson(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion: the one to use at 0 or n, where Wilson's and a bootstrap's
    collapse or shrink (a bootstrap of all-zero scores is [0, 0])."""
    from scipy.stats import beta

    if n == 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2
    low = 0.0 if correct == 0 else float(beta.ppf(tail, correct, n - correct + 1))
    high = 1.0 if correct == n else float(beta.ppf(1 - tail, correct + 1, n - correct))
    return (low, high)


def proportion_ci(correct: int, n: int) -> tuple[tuple[float, float], str]:
    """((low, high), method) for a 0/1 proportion: Clopper-Pearson at 0 or n, Wilson otherwise."""
    if n and correct in (0, n):
        return clopper_pearson(correct, n), "clopper_pearson"
    return wilson_interval(correct, n), "wilson"


def mean_ci(scores, seed: int, resamples: int = RESAMPLES) -> tuple[tuple[float, float], str]:
    """((low, high), method) for the mean of per-question scores in [0, 1]: a bootstrap from n = 100 questions, Wilson
    on the mean below (a bootstrap of a few questions is too narrow), Clopper-Pearson when every score is 0 or 1."""
    values = np.asarray(scores, dtype=float)
    n = values.size
    total = float(values.sum())
    if n and total in (0.0, float(n)):
        return clopper_pearson(int(total), n), "clopper_pearson"
    if n < 100:
        return wilson_interval(total, n), "wilson"
    return bootstrap_ci(values, seed, resamples), f"bootstrap{resamples}"


def lattice(differences, denominators=(1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 60)) -> int | None:
    """The smallest k such that every difference is a whole multiple of 1/k (per-question means over k rotations,
    or over seeds, differ in such steps), or None."""
    d = np.asarray(differences, dtype=float)
    for k in denominators:
        scaled = d * k
        if np.allclose(scaled, np.round(scaled), atol=1e-9):
            return k
    return None


def sign_flip_exact(differences) -> float | None:
    """Two-sided exact p of a paired sign-flip test (every question's difference's sign flipped with probability
    1/2) where the differences lie on a lattice of step 1/k: the null distribution of their sum is the convolution
    of one two-point distribution per question, computed exactly. None off a lattice."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    k = lattice(d)
    if k is None:
        return None
    steps = np.round(d * k).astype(int)
    steps = steps[steps != 0]  # a float difference of ~1e-17 is no difference, and a zero-size step would erase all
    units = np.abs(steps)
    observed = int(steps.sum())
    if units.size == 0:
        return 1.0
    # The sum of c copies of ±u is u·(2j - c) with probability C(c, j) / 2^c: each distinct size at once.
    total = int(units.sum())
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0
    for u, c in zip(*np.unique(units, return_counts=True)):
        j = np.arange(c + 1)
        log_pmf = _log_binom(c, j) - c * math.log(2)
        kernel = np.zeros(2 * u * c + 1)
        kernel[u * (2 * j)] = np.exp(log_pmf)
        dist = np.convolve(dist, kernel)[u * c : u * c + 2 * total + 1]
    sums = np.arange(-total, total + 1)
    return float(min(1.0, dist[np.abs(sums) >= abs(observed)].sum()))


def _log_binom(n: int, k: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def paired_test(a, b, seed: int) -> tuple[str, float]:
    """(test, two-sided p) for paired per-question scores: exact McNemar for 0/1 scores, the exact sign-flip test on
    a lattice (rotation or seed means), else a sign-flip test of 10^6 resamples."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    binary = np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()
    if binary:
        return "mcnemar_exact", mcnemar_exact(int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()))
    p = sign_flip_exact(b - a)
    if p is not None:
        return "sign_flip_exact", p
    return "sign_flip_1e6", sign_flip_p(b - a, seed, resamples=1_000_000)


Z_975, Z_80 = 1.959964, 0.841621


def paired_bounds(a, b, margin: float, alpha: float = 0.05) -> dict:
    """What a paired comparison can say: the difference's standard error, the minimum detectable difference at 80%
    power (two-sided alpha), and two one-sided tests (TOST) of equivalence within ±margin, normal approximation on
    the per-question differences."""
    from scipy.stats import norm

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = d.size
    diff = float(d.mean()) if n else math.nan
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    if not se > 0:  # identical scores: no spread, the difference is exactly 0
        se = 0.0
    mdd = (Z_975 + Z_80) * se
    if se == 0:
        p_tost = 0.0 if abs(diff) < margin else 1.0
    else:
        p_tost = float(max(norm.sf((diff + margin) / se), norm.cdf((diff - margin) / se)))
    return {
        "se": se,
        "mdd80": mdd,
        "margin": margin,
        "tost_p": p_tost,
        "equivalent": p_tost < alpha,
    }
