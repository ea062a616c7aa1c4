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
