from math import comb

import numpy as np
import pytest

from irlm import metrics


def test_pass_at_k_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        c, k = int(rng.integers(0, n + 1)), int(rng.integers(1, n + 1))
        assert metrics.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_pass_at_k_matches_subset_monte_carlo():
    rng = np.random.default_rng(1)
    pool = np.array([1] * 3 + [0] * 7)
    hits = np.mean([pool[rng.choice(10, 4, replace=False)].any() for _ in range(20000)])
    assert metrics.pass_at_k(10, 3, 4) == pytest.approx(hits, abs=0.01)


@pytest.mark.parametrize("args", [(0, 0, 1), (5, 6, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_bad_input(args):
    with pytest.raises(ValueError):
        metrics.pass_at_k(*args)


def test_bootstrap_ci_brackets_mean_and_narrows():
    x = np.random.default_rng(0).random(400) < 0.3
    small, big = metrics.accuracy_ci(x[:40]), metrics.accuracy_ci(x)
    assert small.lo <= small.mean <= small.hi and big.lo <= big.mean <= big.hi
    assert big.hi - big.lo < small.hi - small.lo
    assert metrics.accuracy_ci(x, seed=5) == metrics.accuracy_ci(x, seed=5)


@pytest.mark.parametrize("kwargs", [dict(values=[]), dict(values=[1.0], n_boot=0), dict(values=[1.0], alpha=1.5)])
def test_bootstrap_ci_bad_input(kwargs):
    with pytest.raises(ValueError):
        metrics.bootstrap_ci(**kwargs)


def test_pass_at_k_curve_is_monotone():
    correct = np.random.default_rng(2).random((50, 16)) < 0.2
    curve = metrics.pass_at_k_curve(correct, [1, 2, 4, 8, 16])
    means = [c.mean for c in curve]
    assert means == sorted(means)
    assert curve[0].mean == pytest.approx(correct.mean())
    assert curve[-1].mean == pytest.approx(correct.any(1).mean())
    with pytest.raises(ValueError):
        metrics.pass_at_k_curve(np.zeros(3, bool), [1])


def test_diversity_and_entropy():
    answers = [[1, 1, 1, 1], [1, 2, 3, 4], [None, 5, 5, None]]
    assert metrics.distinct_answers(answers).tolist() == [1, 4, 2]
    h = metrics.answer_entropy(answers)
    assert h[0] == 0 and h[1] == pytest.approx(np.log(4)) and h[2] == pytest.approx(np.log(2))
    with pytest.raises(ValueError):
        metrics.answer_entropy([[]])
    with pytest.raises(ValueError):
        metrics.distinct_answers([])


def test_auc_is_the_pairwise_win_rate():
    rng = np.random.default_rng(2)
    s, y = rng.integers(0, 5, 60).astype(float), rng.random(60) < 0.4
    wins = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert metrics.auc(s, y) == pytest.approx(np.mean(wins))
    assert metrics.auc([3, 2, 1], [True, False, False]) == 1.0
    assert metrics.auc([1, 2, 3], [True, False, False]) == 0.0
    for bad in [([1, 2], [True, True]), ([1, 2], [True]), ([[1, 2]], [[True, False]])]:
        with pytest.raises(ValueError):
            metrics.auc(*bad)


def test_within_query_auc_ignores_the_query_level():
    correct = np.array([[True, False, False], [True, True, True], [False, True, False]])
    # a scorer that ranks queries perfectly but samples within a query backwards
    scores = np.array([[0.0, 1.0, 1.0], [9.0, 9.0, 9.0], [5.0, 5.5, 6.0]])
    assert metrics.within_query_auc(scores, correct) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shape"):
        metrics.within_query_auc(scores[:, :2], correct)
    with pytest.raises(ValueError, match="both right and wrong"):
        metrics.within_query_auc(scores[1:2], correct[1:2])
