import copy
import math

import pytest
import torch

from irlm import iterate, sft
from irlm.adapters import PlainAdapter
from irlm.tasks import expert_solution, make_queries


def demos(n, seed=7):
    return [(PlainAdapter().prompt(q, "columns"), expert_solution(q)) for q in make_queries(n, seed=seed)]


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def nll(model, tok, pairs):
    with torch.no_grad():
        return sft.batch_nll(model, sft.encode_pairs(tok, pairs), tok.pad_token_id).item()


def dataset(pairs, round=1, method="best-of-4", reward="gold check"):
    prompts, responses = zip(*pairs)
    return iterate.round_dataset(prompts, responses, [True] * len(pairs), method, round, reward)


# round_dataset


def test_round_dataset_keeps_accepted_distinct_pairs_in_first_seen_order():
    prompts = ["p1", "p2", "p1", "p3", "p1", "p2", "p4"]
    responses = ["a", "b", "a", "c", "z", "b", "d"]
    keep = [True, True, True, False, True, True, False]
    ds = iterate.round_dataset(prompts, responses, keep, "best-of-16", 3, "learned ORM")
    assert tuple(ds.column_names) == iterate.COLUMNS
    assert list(zip(ds["prompt"], ds["response"])) == [("p1", "a"), ("p2", "b"), ("p1", "z")]
    assert ds["method"] == ["best-of-16"] * 3 and ds["round"] == [3] * 3 and ds["reward"] == ["learned ORM"] * 3


def test_round_dataset_same_response_to_another_prompt_is_another_pair():
    ds = iterate.round_dataset(["p1", "p2", "p1"], ["a", "a", "a"], [True, True, True], "MCTS", 1, "gold check")
    assert list(zip(ds["prompt"], ds["response"])) == [("p1", "a"), ("p2", "a")]


def test_round_dataset_an_empty_acceptance_is_an_empty_dataset_with_the_columns():
    ds = iterate.round_dataset(["p1", "p2"], ["a", "b"], [False, False], "MCTS", 1, "gold check")
    assert len(ds) == 0 and tuple(ds.column_names) == iterate.COLUMNS
    empty = iterate.round_dataset([], [], [], "MCTS", 2, "gold check")
    assert len(empty) == 0 and tuple(empty.column_names) == iterate.COLUMNS
    full = iterate.round_dataset(["p"], ["a"], [True], "MCTS", 2, "gold check")
    assert empty.features == full.features, "an empty round has the column types of a full one"
    assert full.features["round"].dtype == "int64" and full.features["prompt"].dtype == "string"


@pytest.mark.parametrize(
    "args, match",
    [
        ((["p1", "p2"], ["a"], [True, True], "MCTS", 1, "gold"), "equal length"),
        ((["p1"], ["a"], [True, False], "MCTS", 1, "gold"), "equal length"),
        ((["p1"], ["a"], [True], "MCTS", 0, "gold"), "round"),
        ((["p1"], ["a"], [True], "MCTS", -1, "gold"), "round"),
        ((["p1"], ["a"], [True], "", 1, "gold"), "method"),
        ((["p1"], ["a"], [True], "MCTS", 1, ""), "reward"),
    ],
)
def test_round_dataset_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        iterate.round_dataset(*args)


# fine_tune


def test_fine_tune_on_nothing_takes_no_step_and_changes_nothing(tiny_model):
    model, tok = tiny_model
    policy = copy.deepcopy(model)
    before = weights(policy)
    empty = iterate.round_dataset(["p"], ["a"], [False], "MCTS", 1, "gold check")
    assert iterate.fine_tune(policy, tok, empty) == 0
    assert same_weights(before, weights(policy))


@pytest.mark.parametrize(
    "n, epochs, batch_size", [(10, 2.0, 4), (8, 1.0, 4), (3, 1.0, 32), (10, 0.5, 4), (6, 0.01, 4), (5, 3, 2)]
)
def test_fine_tune_takes_ceil_epochs_times_rows_over_batch_steps(tiny_model, monkeypatch, n, epochs, batch_size):
    model, tok = tiny_model
    calls = []
    real = sft.behaviour_clone

    def recording(*args, **kwargs):
        losses = real(*args, **kwargs)
        calls.append(len(losses))
        return losses

    monkeypatch.setattr(sft, "behaviour_clone", recording)
    steps = iterate.fine_tune(copy.deepcopy(model), tok, dataset(demos(n)), epochs=epochs, batch_size=batch_size)
    expected = max(1, math.ceil(epochs * n / batch_size))
    assert steps == expected and calls == [expected]


def test_fine_tune_lowers_the_nll_of_its_data_and_leaves_eval_mode(tiny_model):
    model, tok = tiny_model
    pairs = demos(8)
    policy = copy.deepcopy(model)
    before = nll(policy, tok, pairs)
    steps = iterate.fine_tune(policy, tok, dataset(pairs), epochs=30, lr=3e-3, batch_size=8)
    assert steps == 30 and not policy.training
    assert nll(policy, tok, pairs) < before - 0.5
    assert nll(model, tok, pairs) == pytest.approx(before), "trained the copy, not the fixture"


@pytest.mark.parametrize("epochs", [0, 0.0, -1.0])
def test_fine_tune_bad_epochs(tiny_model, epochs):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="epochs"):
        iterate.fine_tune(model, tok, dataset(demos(2)), epochs=epochs)
    empty = iterate.round_dataset([], [], [], "MCTS", 1, "gold check")
    with pytest.raises(ValueError, match="epochs"):
        iterate.fine_tune(model, tok, empty, epochs=epochs)


# expert_iteration

ARGS = dict(epochs=2.0, lr=3e-3, batch_size=4, seed=5)


def no_seed(args):
    return {k: v for k, v in args.items() if k != "seed"}


class Collect:
    """A fake collector: records the policy it was given, returns this round's few pairs."""

    def __init__(self, n=4):
        self.seen, self.n = [], n

    def pairs(self, r):
        return demos(self.n, seed=100 + r)

    def __call__(self, policy, r):
        self.seen.append((policy, r, weights(policy)))
        return dataset(self.pairs(r), round=r, method="fake", reward="everything")


@pytest.mark.parametrize("restart", [False, True])
def test_expert_iteration_numbers_rounds_and_never_changes_the_base(tiny_model, restart):
    model, tok = tiny_model
    base = weights(model)
    collect = Collect()
    out = iterate.expert_iteration(model, tok, collect, rounds=3, restart=restart, **ARGS)
    assert [r.round for r in out] == [1, 2, 3] and [r for _, r, _ in collect.seen] == [1, 2, 3]
    assert all(isinstance(r, iterate.Round) for r in out)
    assert [r.dataset["round"] for r in out] == [[1] * 4, [2] * 4, [3] * 4]
    assert [r.steps for r in out] == [math.ceil(2.0 * 4 / 4)] * 3
    assert same_weights(base, weights(model))
    assert all(r.policy is not model for r in out)
    assert len({id(r.policy) for r in out}) == 3, "each round returns its own policy object"


@pytest.mark.parametrize("restart", [False, True])
def test_expert_iteration_collects_with_the_policy_just_trained(tiny_model, restart):
    model, tok = tiny_model
    collect = Collect()
    out = iterate.expert_iteration(model, tok, collect, rounds=3, restart=restart, **ARGS)
    assert collect.seen[0][0] is model
    for r in (1, 2):
        policy, _, seen_weights = collect.seen[r]
        assert policy is out[r - 1].policy
        assert same_weights(seen_weights, weights(out[r - 1].policy)), "a later round did not move earlier policies"


def test_expert_iteration_continues_from_the_last_policy(tiny_model):
    model, tok = tiny_model
    collect = Collect()
    out = iterate.expert_iteration(model, tok, collect, rounds=2, **ARGS)
    by_hand = copy.deepcopy(model)
    for r in (1, 2):
        iterate.fine_tune(by_hand, tok, dataset(collect.pairs(r), round=r), seed=ARGS["seed"] + r, **no_seed(ARGS))
        assert same_weights(weights(by_hand), weights(out[r - 1].policy))


def test_expert_iteration_with_restart_starts_every_round_from_the_base(tiny_model):
    model, tok = tiny_model
    collect = Collect()
    out = iterate.expert_iteration(model, tok, collect, rounds=2, restart=True, **ARGS)
    for r in (1, 2):
        from_base = copy.deepcopy(model)
        iterate.fine_tune(from_base, tok, dataset(collect.pairs(r), round=r), seed=ARGS["seed"] + r, **no_seed(ARGS))
        assert same_weights(weights(from_base), weights(out[r - 1].policy))
    continued = iterate.expert_iteration(model, tok, Collect(), rounds=2, **ARGS)
    assert same_weights(weights(continued[0].policy), weights(out[0].policy)), "round 1 is the same either way"
    assert not same_weights(weights(continued[1].policy), weights(out[1].policy))


def test_expert_iteration_a_round_that_accepts_nothing_passes_the_policy_on(tiny_model):
    model, tok = tiny_model

    def collect(policy, r):
        keep = [r != 2] * 3
        prompts, responses = zip(*demos(3, seed=100 + r))
        return iterate.round_dataset(prompts, responses, keep, "fake", r, "gold check")

    out = iterate.expert_iteration(model, tok, collect, rounds=2, **ARGS)
    assert [r.steps for r in out] == [2, 0] and len(out[1].dataset) == 0
    assert same_weights(weights(out[0].policy), weights(out[1].policy))


@pytest.mark.parametrize("rounds", [0, -2])
def test_expert_iteration_bad_rounds(tiny_model, rounds):
    model, tok = tiny_model
    collect = Collect()
    with pytest.raises(ValueError, match="rounds"):
        iterate.expert_iteration(model, tok, collect, rounds=rounds)
    assert collect.seen == []


def test_expert_iteration_refuses_data_without_provenance(tiny_model):
    from datasets import Dataset

    model, tok = tiny_model
    base = weights(model)
    bare = Dataset.from_dict({"prompt": ["p"], "response": ["a"]})
    with pytest.raises(ValueError, match="round_dataset"):
        iterate.expert_iteration(model, tok, lambda policy, r: bare, rounds=2)
    no_reward = dataset(demos(2)).remove_columns("reward")
    with pytest.raises(ValueError, match="columns"):
        iterate.expert_iteration(model, tok, lambda policy, r: no_reward, rounds=1)
    assert same_weights(base, weights(model))


def test_expert_iteration_refuses_rows_of_another_round(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="round 1"):
        iterate.expert_iteration(model, tok, lambda policy, r: dataset(demos(2), round=r + 1), rounds=1)


def test_fine_tune_bad_batch_size(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="batch_size"):
        iterate.fine_tune(copy.deepcopy(model), tok, dataset(demos(2)), batch_size=0)
