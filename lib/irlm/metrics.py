"""Metrics: accuracy with bootstrap confidence intervals, paired comparisons, pass@k,
diversity and entropy.

Chapter 1 introduces them; every chapter reports its numbers with them. A claim that
method A beats method B rests on :func:`paired_difference`: both evaluated on the same
queries, the interval of the mean of A - B (:func:`independent_runs_difference` when each
method has runs of its own that share only the queries).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np


class CI(NamedTuple):
    """A point estimate with a ``1 - alpha`` confidence interval ``[lo, hi]``."""

    mean: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def _check_bootstrap(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _percentile_ci(point: float, draws: Sequence[float] | np.ndarray, alpha: float) -> CI:
    """``point`` with the ``alpha/2`` and ``1 - alpha/2`` quantiles of its bootstrap ``draws``."""
    return CI(float(point), float(np.quantile(draws, alpha / 2)), float(np.quantile(draws, 1 - alpha / 2)))


def bootstrap_ci(values: Sequence[float] | np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> CI:
    """Mean of ``values`` with a percentile-bootstrap interval: resample the values
    with replacement ``n_boot`` times and take the ``alpha/2`` and ``1 - alpha/2``
    quantiles of the resampled means (Efron & Tibshirani, 1993)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {x.shape}")
    _check_bootstrap(n_boot, alpha)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return _percentile_ci(x.mean(), means, alpha)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> CI:
    """Mean of ``a - b`` with a percentile-bootstrap interval, for two methods scored on
    the same queries.

    ``a`` and ``b`` have shape ``(queries,)``, or ``(seeds, queries)`` when runs under
    several seeds are pooled. Pairing removes the queries' own difficulty from the
    comparison: the bootstrap resamples the per-query differences
    :math:`\\delta_q = a_q - b_q`, so an interval that excludes 0 says A and B differ on
    these queries, which two overlapping unpaired intervals cannot say. With seeds, every
    run is scored on the same queries (a crossed design), and the bootstrap resamples both:
    draw seeds with replacement and one set of queries with replacement, shared by the drawn
    seeds, and average
    :math:`\\bar\\delta^* = \\frac{1}{S}\\sum_{s^*} \\frac{1}{Q}\\sum_{q^*} \\delta_{s^* q^*}`.
    Seed-to-seed variation then widens the interval instead of counting as more queries, and
    a query's difficulty, common to all runs, is drawn once, not once per run (drawing the
    queries apart for each seed would count the same queries' noise as if it were new).
    ``NaN`` entries (a query a method could not score) are an error.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim not in (1, 2) or a.size == 0:
        raise ValueError(f"a and b must have one shape, (queries,) or (seeds, queries); got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a and b must not contain NaN")
    _check_bootstrap(n_boot, alpha)
    delta = (a - b).reshape(-1, a.shape[-1])
    seeds, queries = delta.shape
    rng = np.random.default_rng(seed)
    s = rng.integers(0, seeds, size=(n_boot, seeds, 1))
    q = rng.integers(0, queries, size=(n_boot, 1, queries))  # one draw of queries, shared by the drawn seeds
    means = delta[s, q].mean(axis=(1, 2))
    return _percentile_ci(delta.mean(), means, alpha)


def independent_runs_difference(
    a: Sequence[Sequence[float]] | np.ndarray,
    b: Sequence[Sequence[float]] | np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> CI:
    """Mean of ``a`` minus mean of ``b`` with a percentile-bootstrap interval, for two methods
    whose runs share nothing but the queries they are scored on: ``a`` has shape
    ``(runs of A, queries)``, ``b`` ``(runs of B, queries)``. Unlike :func:`paired_difference`,
    whose seed axis pairs run ``s`` of A with run ``s`` of B, no run of A belongs with a run of
    B here, so each method's runs are drawn with replacement on their own, and one draw of
    queries is shared by both (the queries still pair the methods):

    .. math:: \\bar\\delta^* = \\frac{1}{Q}\\sum_{q^*}\\Big(\\frac{1}{S_A}\\sum_{s^*} a_{s^* q^*}
              - \\frac{1}{S_B}\\sum_{t^*} b_{t^* q^*}\\Big).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.size == 0 or b.size == 0:
        raise ValueError(f"a and b must be (runs, queries) with the same queries; got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a and b must not contain NaN")
    _check_bootstrap(n_boot, alpha)
    rng = np.random.default_rng(seed)
    runs_a = rng.integers(0, len(a), size=(n_boot, len(a), 1))
    runs_b = rng.integers(0, len(b), size=(n_boot, len(b), 1))
    q = rng.integers(0, a.shape[1], size=(n_boot, 1, a.shape[1]))  # one draw of queries for both
    means = a[runs_a, q].mean(axis=(1, 2)) - b[runs_b, q].mean(axis=(1, 2))
    return _percentile_ci(a.mean() - b.mean(), means, alpha)


def excludes_zero(ci: CI) -> bool:
    """Whether a paired interval says the two methods differ: both ends on one side of 0."""
    return ci.lo > 0 or ci.hi < 0


def verdict(ci: CI, n: int) -> str:
    """How the course reads a paired interval of A - B over ``n`` queries: "excludes 0", or
    "no measurable difference at this sample size (n = ...)"."""
    if excludes_zero(ci):
        return "excludes 0"
    return f"no measurable difference at this sample size (n = {n})"


def accuracy_ci(correct: Sequence[bool] | np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> CI:
    """Accuracy (fraction of ``True``) with a bootstrap confidence interval."""
    return bootstrap_ci(np.asarray(correct, dtype=float), n_boot, alpha, seed)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from ``n`` samples of which ``c`` are correct.

    .. math:: \\widehat{\\text{pass@}k} = 1 - \\binom{n - c}{k} \\Big/ \\binom{n}{k}

    the probability that a random size-``k`` subset of the ``n`` samples holds at least
    one correct one (Chen et al., 2021, "Evaluating Large Language Models Trained on
    Code"). Computed as a stable product, :math:`1 - \\prod_{i=n-c+1}^{n} (1 - k/i)`.
    """
    if not (isinstance(n, (int, np.integer)) and isinstance(c, (int, np.integer)) and isinstance(k, (int, np.integer))):
        raise TypeError("n, c and k must be integers")
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def as_grid(correct: np.ndarray) -> np.ndarray:
    """``correct`` as a boolean ``(queries, samples or prompts)`` array, or a clear error."""
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.size == 0:
        raise ValueError(f"correct must be a non-empty (queries, samples) array, got shape {correct.shape}")
    return correct


def pass_at_k_per_query(correct: np.ndarray, k: int) -> np.ndarray:
    """The unbiased pass@k (:func:`pass_at_k`) of each query (row) of a boolean
    ``(queries, n)`` array: per-query values, ready for :func:`paired_difference`."""
    correct = as_grid(correct)
    return np.array([pass_at_k(correct.shape[1], int(c), k) for c in correct.sum(axis=1)])


def pass_at_k_curve(correct: np.ndarray, ks: Sequence[int], n_boot: int = 1000, seed: int = 0) -> list[CI]:
    """pass@k for each ``k`` in ``ks``: the mean over queries of the unbiased estimator,
    with a bootstrap interval over queries. ``correct`` is boolean, shape ``(queries, n)``."""
    return [bootstrap_ci(pass_at_k_per_query(correct, int(k)), n_boot=n_boot, seed=seed) for k in ks]


def distinct_answers(answers: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Number of distinct final answers among each query's samples (``None`` counts as one)."""
    if len(answers) == 0:
        raise ValueError("answers is empty")
    return np.array([len(set(row)) for row in answers])


def distinct_correct(responses: Sequence[Sequence[Hashable]], correct: np.ndarray) -> np.ndarray:
    """Number of distinct correct responses among each query's samples: ``responses[i][j]``
    counts when ``correct[i, j]``, and two responses are distinct when they differ as
    strings (``"12*5"`` and ``"5*12"`` count twice). A diversity measure that wrong answers
    cannot inflate; it grows with the number of correct samples too."""
    correct = as_grid(correct)
    if len(responses) != correct.shape[0] or any(len(row) != correct.shape[1] for row in responses):
        raise ValueError(f"responses must have the shape of correct {correct.shape}")
    return np.array([len({r for r, ok in zip(row, flags) if ok}) for row, flags in zip(responses, correct)])


def answer_entropy(answers: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Entropy (nats) of each query's empirical answer distribution,
    :math:`H = -\\sum_a \\hat p(a) \\log \\hat p(a)`: 0 when every sample agrees,
    :math:`\\log n` when all ``n`` differ."""
    if len(answers) == 0:
        raise ValueError("answers is empty")
    out = []
    for row in answers:
        if len(row) == 0:
            raise ValueError("every query needs at least one sampled answer")
        p = np.array(list(Counter(row).values()), dtype=float) / len(row)
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


def auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative (ties count half), the Mann-Whitney statistic
    :math:`\\frac{1}{n_+ n_-} \\sum_{i \\in +} \\sum_{j \\in -} \\big(1[s_i > s_j] + \\tfrac12 1[s_i = s_j]\\big)`."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got shapes {s.shape} and {y.shape}")
    if y.all() or not y.any():
        raise ValueError("labels need at least one positive and one negative")
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def paired_auc_difference(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> CI:
    """:func:`auc` of scorer A minus that of scorer B on the same items, with a cluster
    bootstrap: items come in ``groups`` (the states of one puzzle, the answers to one
    query), so the bootstrap draws groups with replacement, keeps all their items, and
    recomputes :math:`\\mathrm{AUC}_A - \\mathrm{AUC}_B` on the draw (a draw with one class
    only is redrawn). Items of one group are not independent; resampling them one by one
    would make the interval too narrow."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    y, g = np.asarray(labels, dtype=bool), np.asarray(groups)
    if not (a.ndim == 1 and a.shape == b.shape == y.shape == g.shape):
        raise ValueError(
            "scores_a, scores_b, labels and groups must be 1-D of one length, "
            f"got {a.shape}, {b.shape}, {y.shape}, {g.shape}"
        )
    _check_bootstrap(n_boot, alpha)
    point = auc(a, y) - auc(b, y)
    keys, index = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(keys))]
    rng, diffs = np.random.default_rng(seed), []
    while len(diffs) < n_boot:
        rows = np.concatenate([members[i] for i in rng.integers(0, len(keys), len(keys))])
        if y[rows].all() or not y[rows].any():
            continue
        diffs.append(auc(a[rows], y[rows]) - auc(b[rows], y[rows]))
    return _percentile_ci(point, diffs, alpha)


def within_query_auc(scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean over queries of the AUC among that query's own samples: how well a scorer
    ranks a right sample above a wrong one *for the same query*, which is all best-of-N
    uses. Queries whose samples are all right or all wrong are skipped."""
    correct = as_grid(correct)
    scores = np.asarray(scores, dtype=float)
    if scores.shape != correct.shape:
        raise ValueError(f"scores must have the shape of correct {correct.shape}, got {scores.shape}")
    mixed = [auc(s, c) for s, c in zip(scores, correct) if 0 < c.sum() < len(c)]
    if not mixed:
        raise ValueError("no query has both right and wrong samples")
    return float(np.mean(mixed))
