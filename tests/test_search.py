import itertools
import math
import random

import numpy as np
import pytest

from irlm import countdown as cd
from irlm import search
from irlm.search import Budget, Proposal

# A toy tree: states are strings over "abc", terminal at length 3, and only "bca" is right.
# The proposer prefers "a" (p = 0.6, 0.3, 0.1), so the answer is a priori unlikely (p = 0.018).
SOLUTION = "bca"
PRIOR = {"a": 0.6, "b": 0.3, "c": 0.1}


def propose(state):
    return [Proposal(x, state + x, math.log(p)) for x, p in PRIOR.items()]


def is_terminal(state):
    return len(state) == 3


def reward(state):
    return float(state == SOLUTION)


def exact_value(state):
    return float(SOLUTION.startswith(state))


def flat_value(state):
    return 0.5


def counting(fn):
    def wrapped(state):
        wrapped.calls += 1
        return fn(state)

    wrapped.calls = 0
    return wrapped


def test_budget_accounting():
    b = Budget(10)
    assert b.charge(4) and b.spent == 4 and b.remaining == 6 and not b.exhausted
    assert not b.charge(7) and b.spent == 4  # refused, nothing spent
    assert b.charge(6) and b.exhausted
    assert Budget(5).cost([Proposal("a", "a", 0.0, 3)] * 2) == 1
    assert Budget(5, unit="tokens").cost([Proposal("a", "a", 0.0, 3)] * 2) == 6


def test_mcts_finds_the_solution_with_an_exact_value():
    result = search.mcts("", propose, exact_value, is_terminal, reward, budget=20, stop_at=1.0)
    assert result.best == SOLUTION and result.reward == 1.0 and result.spent <= 20


def test_mcts_finds_the_solution_by_exploring_without_a_value_signal():
    # 13 expansions open the whole tree; the flat value gives no hint, the prior misleads
    result = search.mcts("", propose, flat_value, is_terminal, reward, budget=13, c_puct=2.0, stop_at=1.0)
    assert result.best == SOLUTION and result.reward == 1.0 and result.spent <= 13
    short = search.mcts("", propose, flat_value, is_terminal, reward, budget=3, stop_at=1.0)
    assert short.best is None and short.spent == 3  # 3 expansions open "", "a", "aa"; no terminal evaluated yet


def test_mcts_visits_concentrate_on_the_best_child():
    result = search.mcts("", propose, exact_value, is_terminal, reward, budget=13, max_simulations=500)
    root = result.tree
    visits = {c.step: c.N for c in root.children}
    assert max(visits, key=visits.get) == "b" and visits["b"] > 0.8 * root.N
    assert [n.state for n in search.most_visited_path(root)] == ["", "b", "bc", "bca"]
    assert root.N == 500 and sum(visits.values()) == root.N - 2  # the root: evaluated, then expanded


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8])
def test_mcts_and_beam_never_exceed_the_budget(limit):
    for run in (
        lambda p, b: search.mcts("", p, flat_value, is_terminal, reward, b),
        lambda p, b: search.beam_search("", p, flat_value, is_terminal, reward, b, beam_width=3),
    ):
        counted = counting(propose)
        result = run(counted, Budget(limit))
        assert result.spent == counted.calls <= limit


def test_a_token_budget_refuses_the_call_that_would_overrun():
    def costly(state):
        return [p._replace(tokens=5) for p in propose(state)]  # 15 tokens a call

    result = search.mcts("", costly, flat_value, is_terminal, reward, Budget(40, unit="tokens"))
    assert result.spent == 30


def test_mcts_is_deterministic_given_the_proposer_seed():
    def run(seed):
        rng = random.Random(seed)

        def noisy(state):
            return [Proposal(x, state + x, rng.gauss(0, 1)) for x in "abc"]

        tree = search.mcts("", noisy, flat_value, is_terminal, reward, budget=8).tree
        return [(child.state, child.N, child.W) for _, child in search.tree_edges(tree)]

    assert run(0) == run(0) and run(0) != run(1)


def test_with_every_value_0_until_success_c_puct_does_not_change_the_search():
    # chapter 7 runs its rollout search once for every c_puct > 0: all Q stay 0 until the solution ends it
    def zero(state):
        return 0.0

    def run(c):
        result = search.mcts("", propose, zero, is_terminal, reward, budget=13, c_puct=c, stop_at=1.0)
        return result.best, result.spent, [(child.state, child.N) for _, child in search.tree_edges(result.tree)]

    assert run(0.25) == run(1.0) == run(4.0) and run(1.0)[0] == SOLUTION


def test_beam_search_with_an_exact_value_is_greedy_to_the_solution():
    result = search.beam_search("", propose, exact_value, is_terminal, reward, budget=10, beam_width=1)
    assert result.best == SOLUTION and result.reward == 1.0 and result.spent == 3
    # without a value signal ties go to the proposer's order: the wrong "aaa"
    flat = search.beam_search("", propose, flat_value, is_terminal, reward, budget=10, beam_width=1)
    assert flat.best == "aaa" and flat.reward == 0.0


def test_beam_search_stops_when_the_budget_runs_out():
    result = search.beam_search("", propose, flat_value, is_terminal, reward, budget=3, beam_width=3)
    assert result.spent == 3 and result.best is None  # the root and 2 of the 3 states of depth 1
    result = search.beam_search("", propose, flat_value, is_terminal, reward, budget=5, beam_width=3)
    assert result.spent == 5 and result.best == "aaa"  # the terminals of the one depth-2 state it paid for
    full = search.beam_search("", propose, flat_value, is_terminal, reward, budget=100, beam_width=3)
    assert full.spent == 1 + 3 + 3 and full.best == "aaa"


def test_duplicate_proposals_merge_and_terminal_roots_are_answers():
    def twice(state):
        return propose(state) + propose(state)[::-1]

    tree = search.mcts("", twice, exact_value, is_terminal, reward, budget=1).tree
    assert [c.step for c in tree.children] == ["a", "b", "c"]
    assert math.isclose(sum(c.P for c in tree.children), 1.0) and math.isclose(tree.children[0].P, 0.6)
    for run in (search.mcts, search.beam_search):
        result = run("bca", propose, exact_value, is_terminal, reward, 5)
        assert result.best == "bca" and result.spent == 0


def test_tree_edges():
    result = search.mcts("", propose, flat_value, is_terminal, reward, budget=13, c_puct=2.0)
    edges = search.tree_edges(result.tree)
    assert len(edges) == 3 + 9 + 27 and edges[0][0] is result.tree
    assert len(search.tree_edges(result.tree, max_depth=1)) == 3
    assert all(child.N >= 2 for _, child in search.tree_edges(result.tree, min_visits=2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budget=0), "budget"),
        (dict(budget=-3), "budget"),
        (dict(c_puct=-0.1), "c_puct"),
        (dict(max_simulations=0), "max_simulations"),
    ],
)
def test_mcts_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        search.mcts("", propose, flat_value, is_terminal, reward, **{"budget": 5, **kwargs})


def test_beam_search_and_budget_bad_input():
    with pytest.raises(ValueError, match="beam_width"):
        search.beam_search("", propose, flat_value, is_terminal, reward, 5, beam_width=0)
    with pytest.raises(ValueError, match="budget"):
        search.beam_search("", propose, flat_value, is_terminal, reward, 0)
    with pytest.raises(ValueError, match="unit"):
        Budget(5, unit="flops")
    with pytest.raises(ValueError, match="max_depth"):
        search.tree_edges(search.Node(""), max_depth=-1)


# --- end to end on Countdown: uniform proposals over the legal steps, the exact value -------


def propose_legal(state):
    return [Proposal(step, cd.apply_step(state, step), 0.0) for step in cd.legal_steps(state)]


def countdown_reward(state):
    return float(state.is_solved)


@pytest.mark.parametrize("method", ["mcts", "beam"])
def test_search_solves_countdown_with_the_exact_value(method):
    for puzzle in cd.make_puzzles(8, seed=7) + cd.make_puzzles(4, seed=7, target=(10, 99)):
        root = cd.State(puzzle)
        if method == "mcts":
            result = search.mcts(
                root, propose_legal, cd.state_value, lambda s: s.is_terminal, countdown_reward, 100, stop_at=1.0
            )
        else:
            result = search.beam_search(
                root, propose_legal, cd.state_value, lambda s: s.is_terminal, countdown_reward, 30, beam_width=1
            )
            assert result.spent == 3
        assert result.reward == 1.0 and cd.is_correct(puzzle, result.best.response)


def test_widening_asks_the_proposer_again_when_every_child_is_a_dead_end():
    calls = {"n": 0}

    def propose(state):
        calls["n"] += 1
        if state == "root":  # first only a dead end, then the good step too
            steps = ["dead"] if calls["n"] == 1 else ["dead", "good"]
            return [search.Proposal(s, s, -1.0) for s in steps]
        return []

    run = lambda widen: search.mcts(  # noqa: E731
        "root", propose, lambda s: 0.0, lambda s: s != "root", lambda s: float(s == "good"), 50, widen=widen
    )
    assert run(0).reward == 0.0
    calls["n"] = 0
    assert run(2).reward == 1.0
    with pytest.raises(ValueError, match="widen"):
        run(-1)


def test_a_proposals_list_charges_its_own_cost_in_tokens():
    def propose(state):
        return search.Proposals([search.Proposal(state + "x", state + "x", 0.0)], cost=7)

    budget = search.Budget(30, unit="tokens")
    search.beam_search("", propose, lambda s: 0.5, lambda s: len(s) == 3, lambda s: 1.0, budget, beam_width=1)
    assert budget.spent == 21


def test_puct_scores_an_unvisited_child_with_its_parents_q():
    parent = search.Node("", N=4, W=2.0)
    fresh = search.Node("x", P=0.5, parent=parent)
    seen = search.Node("y", P=0.5, parent=parent, N=1, W=0.0)
    assert search.puct(fresh, parent, 1.0) == pytest.approx(0.5 + 0.5 * 2 / 1)
    assert search.puct(seen, parent, 1.0) == pytest.approx(0.0 + 0.5 * 2 / 2)
    assert search.puct(fresh, parent, 0.0) == pytest.approx(parent.Q)


def test_mcts_tries_a_live_sibling_before_it_revisits_a_dead_one():
    # The root proposes a likely step into a dead end (p = 0.7) and an unlikely live one (p = 0.3).
    # With Q = 0 for unvisited children, the 4th simulation would expand the dead child
    # (0 + 0.7 sqrt(3) / 2 = 0.61 > 0 + 0.3 sqrt(3) = 0.52); the parent's Q (1/3) ranks the live one first.
    values = {"": 0.5, "dead": 0.0, "live": 1.0}

    def propose_two(state):
        if state == "":
            return [Proposal("dead", "dead", math.log(0.7)), Proposal("live", "live", math.log(0.3))]
        return [Proposal("z", state + "z", 0.0)]

    expanded = []

    def recording(state):
        expanded.append(state)
        return propose_two(state)

    result = search.mcts(
        "", recording, values.get, lambda s: s.endswith("z"), lambda s: 0.0, budget=10, max_simulations=4
    )
    dead, live = result.tree.children
    assert (dead.step, live.step) == ("dead", "live")
    assert live.value == 1.0 and live.N == 1  # the live step was tried ...
    assert expanded == [""] and not dead.expanded  # ... and the dead one never revisited


def test_sample_until_solved_matches_every_order():
    costs = np.array([[3, 5, 2, 4], [1, 1, 1, 1]])
    solved = np.array([[False, True, False, True], [False, False, False, False]])
    budgets = [2, 6, 8, 10, 20]
    got = search.sample_until_solved(costs, solved, budgets, shared=1, draws=4000, seed=0)
    exact = np.zeros(len(budgets))
    orders = list(itertools.permutations(range(4)))
    for order in orders:
        spent = 1 + np.cumsum(costs[0][list(order)])
        first = spent[np.argmax(solved[0][list(order)])]
        exact += first <= np.array(budgets)
    assert np.allclose(got[0], exact / len(orders), atol=0.03)
    assert (got[1] == 0).all()  # never solved
    assert got[0, 0] == 0 and got[0, -1] == 1  # 2 tokens cannot pay, 20 always can
    per_query = search.sample_until_solved(costs, solved, budgets, shared=np.array([1, 100]), draws=4000, seed=0)
    assert np.array_equal(per_query[0], got[0])  # one shared cost per query
    with pytest.raises(ValueError, match="same shape|one shape"):
        search.sample_until_solved(costs, solved[:, :3], budgets)
    with pytest.raises(ValueError, match="draws"):
        search.sample_until_solved(costs, solved, budgets, draws=0)


def test_memo_scores_the_given_states_in_one_batch_and_others_once():
    batches = []

    def score(states):
        batches.append(list(states))
        return [len(s) / 10 for s in states]

    value = search.memo(score, ["a", "ab", "abc"])
    assert [value(s) for s in ["ab", "a", "abc", "ab"]] == [0.2, 0.1, 0.3, 0.2]
    assert batches == [["a", "ab", "abc"]]
    assert value("abcd") == value("abcd") == 0.4 and batches[1:] == [["abcd"]]
    assert search.memo(score, [])("xy") == 0.2


def _first_solved_by_loop(costs, solved, budget, shared):
    total, first = shared, -1
    for j, (c, s) in enumerate(zip(costs, solved)):
        if total + c > budget:
            break
        total += c
        if s:
            first = j
            break
    return first, total


def test_first_solved_within_matches_a_loop():
    rng = np.random.default_rng(0)
    costs = rng.integers(0, 40, size=(200, 12))
    solved = rng.random((200, 12)) < 0.15
    shared = rng.integers(0, 30, size=200)
    for budget in (0, 25, 100, 300, 10_000):
        first, spent = search.first_solved_within(costs, solved, budget, shared)
        expected = [_first_solved_by_loop(c, s, budget, sh) for c, s, sh in zip(costs, solved, shared)]
        assert first.tolist() == [f for f, _ in expected]
        assert spent.tolist() == [float(t) for _, t in expected]


def test_first_solved_within_by_hand():
    costs = np.array([[10, 10, 10], [10, 10, 10], [30, 1, 1]])
    solved = np.array([[False, True, True], [False, False, False], [True, True, True]])
    first, spent = search.first_solved_within(costs, solved, budget=25, shared=5)
    assert first.tolist() == [1, -1, -1]  # row 3: its first sample alone passes the budget
    assert spent.tolist() == [25.0, 25.0, 5.0]
    with pytest.raises(ValueError, match="costs and solved"):
        search.first_solved_within(costs, solved[:, :2], 25)
    with pytest.raises(ValueError, match="costs must be >= 0"):
        search.first_solved_within(-costs, solved, 25)
