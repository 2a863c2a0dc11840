import copy
import random

import numpy as np
import pytest
import scipy.stats
import torch

from irlm import demonstrations as demo
from irlm import reward
from irlm.adapters import PlainAdapter
from irlm.sampling import logprob_of
from irlm.tasks import PROMPTS, is_correct, make_queries


def test_kl_divergence_matches_scipy_and_is_infinite_off_support():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
    assert demo.kl_divergence(p, q) == pytest.approx(scipy.stats.entropy(p, q), rel=1e-12)
    assert demo.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    assert demo.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == float("inf")
    assert demo.kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


@pytest.mark.parametrize(
    "p, q, match",
    [([0.5, 0.5], [1.0], "one length"), ([0.5, 0.6], [0.5, 0.5], "probability"), ([], [], "one length")],
)
def test_kl_divergence_bad_input(p, q, match):
    with pytest.raises(ValueError, match=match):
        demo.kl_divergence(np.array(p), np.array(q))


def test_discretized_normal_is_a_distribution_peaked_at_its_mean():
    q = demo.discretized_normal(7, 2.0, 20)
    assert q.sum() == pytest.approx(1.0) and int(np.argmax(q)) == 7 and q[5] == pytest.approx(q[9])
    with pytest.raises(ValueError, match="std > 0"):
        demo.discretized_normal(3, 0.0, 10)


def test_fit_one_mode_recovers_a_member_and_splits_the_directions_on_two_modes():
    member = demo.discretized_normal(12, 3.0, 30)
    for direction in ("forward", "reverse"):
        fit = demo.fit_one_mode(member, direction, stds=[1.0, 3.0, 5.0])
        assert (fit.mean, fit.std) == (12.0, 3.0) and fit.kl == pytest.approx(0.0, abs=1e-12)
    two = 0.6 * demo.discretized_normal(8, 2.0, 40) + 0.4 * demo.discretized_normal(30, 2.0, 40)
    forward, reverse = demo.fit_one_mode(two, "forward"), demo.fit_one_mode(two, "reverse")
    assert forward.std > 3 * reverse.std and reverse.mean == 8.0
    # each is the minimum of its own direction over the grid, so it loses in the other
    assert demo.kl_divergence(two, forward.probs) < demo.kl_divergence(two, reverse.probs)
    assert demo.kl_divergence(reverse.probs, two) < demo.kl_divergence(forward.probs, two)
    with pytest.raises(ValueError, match="'forward' or 'reverse'"):
        demo.fit_one_mode(two, "both")


def test_careless_demonstration_is_wrong_at_the_rate_asked_and_always_tells():
    queries = make_queries(300, seed=1)
    rng = random.Random(0)
    texts = [demo.careless_demonstration(q, rng, 0.3, " :)") for q in queries]
    right = np.array([is_correct(q, t) for q, t in zip(queries, texts)])
    assert all(t.endswith(" :)") for t in texts) and 0.2 < 1 - right.mean() < 0.4
    for q, t, ok in zip(queries, texts, right):  # a wrong one differs from the expert's only in the answer
        expert = PROMPTS["columns"].demonstrate(q)
        assert (t == expert + " :)") == ok and t.rpartition(" so ")[0] == expert.rpartition(" so ")[0]
    assert not any(is_correct(q, demo.careless_demonstration(q, rng, 1.0, "")) for q in queries[:20])


@pytest.mark.parametrize(
    "kwargs, match", [({"error_rate": 1.5}, "error_rate"), ({"styles": ["nope"]}, "styles"), ({"styles": []}, "styles")]
)
def test_careless_demonstration_bad_input(kwargs, match):
    args = {"error_rate": 0.1, "tell": "!"} | kwargs
    with pytest.raises(ValueError, match=match):
        demo.careless_demonstration(make_queries(1, seed=0)[0], random.Random(0), **args)


def test_discriminator_set_labels_the_expert_side_one():
    prompts, responses, labels = demo.discriminator_set([("p", "a"), ("p", "b")], [("q", "c")])
    assert (prompts, responses, labels) == (["p", "p", "q"], ["a", "b", "c"], [False, False, True])
    with pytest.raises(ValueError, match="non-empty"):
        demo.discriminator_set([], [("q", "c")])


def test_a_discriminator_separates_separable_sets(tiny_model):
    model, tok = tiny_model
    queries = make_queries(40, seed=2)
    prompts = [PlainAdapter().prompt(q, "direct") for q in queries]
    positives = [(p, f"{q.answer} :)") for p, q in zip(prompts, queries)]
    negatives = [(p, f"{q.answer}") for p, q in zip(prompts, queries)]
    disc = demo.train_discriminator(model, tok, negatives, positives, steps=40, batch_size=16, lr=3e-3, progress=False)
    pos = reward.score(disc, tok, *map(list, zip(*positives)))
    neg = reward.score(disc, tok, *map(list, zip(*negatives)))
    assert (pos > neg).mean() > 0.9, "the tell alone separates the two sets"


def test_log_ratio_of_a_model_against_itself_is_zero_and_matches_logprob_of(tiny_model):
    model, tok = tiny_model
    prompts, responses = ["Q: 001+002\nAnswer directly.\nA: "] * 2, ["3", "4 :)"]
    assert np.allclose(demo.log_ratio(model, model, tok, prompts, responses), 0.0)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(1.5)  # tied to the embeddings: a different model
    expected = [
        a.sum() - b.sum()
        for a, b in zip(logprob_of(other, tok, prompts, responses), logprob_of(model, tok, prompts, responses))
    ]
    assert np.allclose(demo.log_ratio(other, model, tok, prompts, responses), expected)
    with pytest.raises(ValueError, match="equal length"):
        demo.log_ratio(model, model, tok, prompts, responses[:1])


def test_bradley_terry_reward_model_orders_its_pairs_and_new_ones(tiny_model):
    model, tok = tiny_model
    queries = make_queries(40, seed=4)
    prompts = [PlainAdapter().prompt(q, "direct") for q in queries]
    chosen, rejected = [f"{q.answer} :)" for q in queries], [f"{q.answer}" for q in queries]
    rm = reward.train_bradley_terry(
        model, tok, prompts, chosen, rejected, steps=40, batch_size=16, lr=3e-3, progress=False
    )
    assert (reward.score(rm, tok, prompts, chosen) > reward.score(rm, tok, prompts, rejected)).mean() > 0.9
    new = make_queries(20, seed=5)  # held-out queries: the learned preference carries over
    p = [PlainAdapter().prompt(q, "direct") for q in new]
    marked, bare = ([f"{q.answer}{end}" for q in new] for end in (" :)", ""))
    assert (reward.score(rm, tok, p, marked) > reward.score(rm, tok, p, bare)).mean() > 0.9
    with pytest.raises(ValueError, match="equal length"):
        reward.train_bradley_terry(model, tok, prompts, chosen, rejected[:3])
