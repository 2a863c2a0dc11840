from math import comb

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

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


def test_paired_difference_matches_a_direct_bootstrap():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    ci = metrics.paired_difference(a, b, n_boot=500, seed=3)
    d = a - b
    idx = np.random.default_rng(3)
    idx.integers(0, 1, size=(500, 1, 1))  # the seed draw comes first, as in the function
    means = d[idx.integers(0, 50, size=(500, 1, 50))].mean(axis=(1, 2))
    assert ci.mean == pytest.approx(d.mean())
    assert ci.lo == pytest.approx(np.quantile(means, 0.025))
    assert ci.hi == pytest.approx(np.quantile(means, 0.975))


def test_paired_difference_removes_query_difficulty():
    # B is A minus a small constant on wildly varying queries: unpaired intervals overlap,
    # the paired one excludes 0.
    difficulty = np.random.default_rng(0).random(40)
    a, b = difficulty + 0.05, difficulty
    paired = metrics.paired_difference(a, b)
    assert paired.lo == pytest.approx(0.05) and paired.hi == pytest.approx(0.05)
    assert metrics.excludes_zero(paired)
    ua, ub = metrics.bootstrap_ci(a), metrics.bootstrap_ci(b)
    assert ua.lo < ub.hi


def test_paired_difference_crossed_seeds_widen_the_interval():
    rng = np.random.default_rng(2)
    seed_effect = np.array([0.3, -0.3, 0.25, -0.25])[:, None]
    a = seed_effect + 0.01 * rng.standard_normal((4, 200))
    b = np.zeros_like(a)
    crossed = metrics.paired_difference(a, b)
    flat = metrics.bootstrap_ci((a - b).ravel())
    assert crossed.mean == pytest.approx(flat.mean)
    assert crossed.hi - crossed.lo > 5 * (flat.hi - flat.lo)
    assert not metrics.excludes_zero(crossed)


def test_paired_difference_does_not_count_the_same_queries_once_per_seed():
    # three runs that agree exactly carry no more information than one: the interval must
    # not shrink by sqrt(3), as it would if each run's queries were drawn apart
    delta = np.random.default_rng(4).standard_normal(300)
    one = metrics.paired_difference(delta, np.zeros(300), n_boot=4000)
    three = metrics.paired_difference(np.tile(delta, (3, 1)), np.zeros((3, 300)), n_boot=4000)
    assert three.mean == pytest.approx(one.mean)
    assert (three.hi - three.lo) == pytest.approx(one.hi - one.lo, rel=0.1)


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        metrics.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.paired_difference([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="n_boot"):
        metrics.paired_difference([1.0], [1.0], n_boot=0)


def test_independent_runs_difference_matches_a_direct_bootstrap():
    rng = np.random.default_rng(5)
    a, b = rng.random((3, 40)), rng.random((2, 40))
    ci = metrics.independent_runs_difference(a, b, n_boot=300, seed=7)
    draws = np.random.default_rng(7)
    runs_a, runs_b = draws.integers(0, 3, size=(300, 3)), draws.integers(0, 2, size=(300, 2))
    queries = draws.integers(0, 40, size=(300, 40))
    means = [
        np.mean([a[s, q] for s in ra for q in qs]) - np.mean([b[t, q] for t in rb for q in qs])
        for ra, rb, qs in zip(runs_a, runs_b, queries)
    ]
    assert ci.mean == pytest.approx(a.mean() - b.mean())
    assert ci.lo == pytest.approx(np.quantile(means, 0.025))
    assert ci.hi == pytest.approx(np.quantile(means, 0.975))


def test_independent_runs_difference_does_not_depend_on_how_the_runs_are_listed():
    # paired_difference pairs run s of A with run s of B; with independent runs that pairing is
    # arbitrary, and listing A's runs in another order moves its interval but not this one's
    rng = np.random.default_rng(6)
    a = np.array([[0.2], [0.6]]) + 0.3 * rng.standard_normal((2, 150))
    b = np.array([[0.5], [0.1]]) + 0.3 * rng.standard_normal((2, 150))
    widths = [
        metrics.independent_runs_difference(rows, b, n_boot=6000).hi
        - metrics.independent_runs_difference(rows, b, n_boot=6000).lo
        for rows in (a, a[::-1])
    ]
    assert widths[0] == pytest.approx(widths[1], rel=0.08)
    paired = [metrics.paired_difference(rows, b, n_boot=6000) for rows in (a, a[::-1])]
    assert abs((paired[0].hi - paired[0].lo) - (paired[1].hi - paired[1].lo)) > 0.1


def test_independent_runs_difference_rejects_bad_input():
    with pytest.raises(ValueError, match="same queries"):
        metrics.independent_runs_difference(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="same queries"):
        metrics.independent_runs_difference(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        metrics.independent_runs_difference(np.full((1, 2), np.nan), np.zeros((1, 2)))


def test_excludes_zero():
    assert metrics.excludes_zero(metrics.CI(0.1, 0.01, 0.2))
    assert metrics.excludes_zero(metrics.CI(-0.1, -0.2, -0.01))
    assert not metrics.excludes_zero(metrics.CI(0.1, -0.01, 0.2))


def test_pass_at_k_per_query_is_the_estimator_row_by_row():
    correct = np.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    got = metrics.pass_at_k_per_query(correct, 2)
    assert got == pytest.approx([1 - comb(2, 2) / comb(4, 2), 0.0, 1.0])
    assert [c.mean for c in metrics.pass_at_k_curve(correct, [2])] == pytest.approx([got.mean()])


def test_verdict_reads_the_interval():
    assert metrics.verdict(metrics.CI(0.1, 0.01, 0.2), 50) == "excludes 0"
    assert metrics.verdict(metrics.CI(0.1, -0.01, 0.2), 50) == "no measurable difference at this sample size (n = 50)"


def test_paired_auc_difference_point_and_clusters():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    good, noise = y + rng.normal(0, 1.0, 200), rng.normal(0, 1.0, 200)
    groups = np.arange(200) // 5
    ci = metrics.paired_auc_difference(good, noise, y, groups, seed=0)
    assert ci.mean == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, noise))
    assert ci.lo > 0 and ci.lo < ci.mean < ci.hi
    # ten identical copies of each item: resampling copies as if independent is too narrow
    copies = np.repeat(np.arange(200), 10)
    as_items = metrics.paired_auc_difference(good[copies], noise[copies], y[copies], np.arange(2000), seed=0)
    as_clusters = metrics.paired_auc_difference(good[copies], noise[copies], y[copies], copies, seed=0)
    assert as_clusters.hi - as_clusters.lo > 2 * (as_items.hi - as_items.lo)
    with pytest.raises(ValueError, match="one length"):
        metrics.paired_auc_difference(good, noise[:10], y, groups)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.paired_auc_difference(good, noise, y, groups, n_boot=0)


def test_distinct_correct_counts_distinct_correct_responses_per_row():
    responses = [
        ["12", "12", "13", "14"],  # two distinct correct: "12" (twice) and "14"
        ["7", "8", "9", "7"],  # nothing correct
        ["a", "b", "c", "d"],  # all correct and distinct
        ["x", "x", "x", "x"],  # all correct, one distinct
    ]
    correct = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=bool)
    by_hand = [len({r for r, ok in zip(row, flags) if ok}) for row, flags in zip(responses, correct)]
    got = metrics.distinct_correct(responses, correct)
    assert by_hand == [2, 0, 4, 1]
    assert got.tolist() == by_hand and got.shape == (4,)


def test_distinct_correct_wrong_responses_never_count():
    # a wrong copy of a correct response and any number of distinct wrong ones add nothing
    responses = [["right", "right", "w1", "w2", "w3"], ["w1", "w2", "w3", "w4", "w5"]]
    correct = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    assert metrics.distinct_correct(responses, correct).tolist() == [1, 0]
    more_wrong = [["right", "right", "right", "right", "right"], ["w1"] * 5]
    assert metrics.distinct_correct(more_wrong, correct).tolist() == [1, 0]


def test_distinct_correct_counts_duplicates_once_and_takes_any_hashable():
    responses = [[(1, 2), (1, 2), (2, 1)], [3, 3, 3]]
    correct = [[True, True, True], [True, False, True]]
    assert metrics.distinct_correct(responses, correct).tolist() == [2, 1]
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 5, (30, 8))
    ok = rng.random((30, 8)) < 0.5
    brute = [len(set(a[o].tolist())) for a, o in zip(answers, ok)]
    assert metrics.distinct_correct(answers.tolist(), ok).tolist() == brute


@pytest.mark.parametrize(
    "responses, correct",
    [
        ([["a", "b"]], [[True, True], [True, False]]),  # too few rows
        ([["a", "b"], ["c", "d"]], [[True, True]]),  # too many rows
        ([["a", "b", "c"], ["c", "d"]], [[True, True], [True, False]]),  # a ragged row
        ([["a"], ["c"]], [[True, True], [True, False]]),  # rows too short
        ([["a", "b"]], [True, True]),  # correct is not 2-D
        ([], np.zeros((0, 3), dtype=bool)),  # nothing at all
    ],
)
def test_distinct_correct_bad_shapes(responses, correct):
    with pytest.raises(ValueError, match="shape"):
        metrics.distinct_correct(responses, correct)
