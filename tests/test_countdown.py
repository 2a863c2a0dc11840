import math
import os
import random

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from irlm import countdown as cd
from irlm.countdown import Puzzle, State, Step

P = Puzzle((4, 7, 8, 8), 24)


def test_step_and_puzzle_text_round_trip():
    assert Step(8, "*", 3, 24).text == "8*3=24" and Step.parse(" 8*3=24, ") == Step(8, "*", 3, 24)
    assert P.text == "4 7 8 8 -> 24" and Puzzle.parse("4 7 8 8 -> 24") == P
    assert P.prompt == "Q: 4 7 8 8 -> 24\nA: "


@pytest.mark.parametrize("text", ["8 * 3 = 24", "8x3=24", "8*3", "3-8=-5", ""])
def test_step_parse_rejects_garbage(text):
    with pytest.raises(ValueError, match="not a step"):
        Step.parse(text)


@pytest.mark.parametrize(
    "numbers, target, match",
    [
        ([4, 7, 8, 8], 24, "numbers"),
        ((4,), 24, "numbers"),
        ((0, 1), 1, "numbers"),
        ((1,) * 7, 7, "numbers"),
        ((1, 2), -1, "target"),
    ],
)
def test_puzzle_rejects_bad_input(numbers, target, match):
    with pytest.raises(ValueError, match=match):
        Puzzle(numbers, target)


def test_step_rejects_unknown_op_and_puzzle_parse_garbage():
    with pytest.raises(ValueError, match="op must be"):
        Step(2, "^", 3, 8)
    with pytest.raises(ValueError, match="not a puzzle"):
        Puzzle.parse("4 7 8 8 = 24")


def test_check_step():
    s = State(P)
    assert cd.check_step(s, Step(8, "-", 4, 4)) and cd.check_step(s, Step(4, "+", 7, 11))  # either order for +
    assert not cd.check_step(s, Step(9, "-", 4, 5))  # 9 is not available
    assert not cd.check_step(s, Step(4, "-", 4, 0))  # only one 4
    assert not cd.check_step(s, Step(8, "+", 4, 13))  # wrong sum
    assert not cd.check_step(s, Step(7, "/", 4, 1))  # inexact division
    assert not cd.check_step(s, Step(4, "-", 7, -3))  # negative result
    assert not cd.check_step(State(Puzzle((3, 8), 24), (Step(8, "*", 3, 24),)), Step(24, "+", 0, 24))  # terminal


def test_apply_and_parse_step_and_the_state_text():
    s = State(P)
    assert s.text == "Q: 4 7 8 8 -> 24\nA: " and s.response == "" and s.remaining == (4, 7, 8, 8)
    step = cd.parse_step(s, "8-4=4,")
    s = cd.apply_step(s, step)
    assert s.remaining == (4, 7, 8) and s.text == "Q: 4 7 8 8 -> 24\nA: 8-4=4 [4 7 8], " and not s.is_terminal
    assert cd.parse_step(s, "8-8=0") is None  # only one 8 left
    assert cd.parse_step(s, "eight") is None
    for text in ["7-4=3", "8*3=24"]:
        s = cd.apply_step(s, cd.parse_step(s, text))
    assert s.is_terminal and s.is_solved and s.response == "8-4=4 [4 7 8], 7-4=3 [3 8], 8*3=24 [24]"
    with pytest.raises(ValueError, match="illegal step"):
        cd.apply_step(State(P), Step(9, "+", 1, 10))
    with pytest.raises(ValueError, match="illegal step"):
        State(P, (Step(8, "/", 3, 2),))


def test_legal_steps_are_legal_distinct_and_complete():
    assert [s.text for s in cd.legal_steps(State(Puzzle((2, 2), 4)))] == ["2*2=4", "2+2=4", "2-2=0", "2/2=1"]
    s = State(P)
    steps = cd.legal_steps(s)
    assert len(steps) == len(set(steps)) == 14 and all(cd.check_step(s, st) for st in steps)
    assert Step(8, "/", 4, 2) in steps and Step(7, "/", 4, 1) not in steps and Step(4, "-", 7, -3) not in steps


@pytest.mark.parametrize(
    "numbers, target, expected",
    [
        ((4, 7, 8, 8), 24, True),
        ((1, 1, 1, 1), 24, False),
        ((3, 3, 8, 8), 24, False),  # 8/(3-8/3) needs a fraction
        ((1, 2, 3, 4), 24, True),
        ((6, 6), 1, True),
        ((6, 6), 2, False),
        ((5, 5, 5, 1), 24, False),
    ],
)
def test_solvable_known_cases(numbers, target, expected):
    assert cd.solvable(numbers, target) is expected


def test_state_value_is_the_exact_value():
    s = State(P)
    assert cd.state_value(s) == 1.0
    assert cd.state_value(cd.apply_step(s, Step(8, "*", 8, 64))) == 0.0
    assert cd.state_value(cd.apply_step(s, Step(8, "*", 4, 32))) == 1.0


def test_solve_and_random_solution_are_correct():
    puzzles = cd.make_puzzles(200, seed=1)
    rng = random.Random(0)
    for p in puzzles:
        assert cd.is_correct(p, cd.response_text(p, cd.solve(p)))
        assert cd.is_correct(p, cd.response_text(p, cd.random_solution(p, rng)))
    assert cd.response_text(P, cd.solve(P)) == "7+4=11 [8 8 11], 11-8=3 [3 8], 8*3=24 [24]"
    assert cd.solve(Puzzle((1, 1, 1, 1), 24)) is None and cd.random_solution(Puzzle((1, 1, 1, 1), 24), rng) is None
    assert len({cd.response_text(P, cd.random_solution(P, random.Random(i))) for i in range(30)}) > 3


def test_is_correct():
    assert cd.is_correct(P, "8-4=4, 7-4=3, 8*3=24") and cd.is_correct(P, "8-4=4,7-4=3,8*3=24,")
    assert not cd.is_correct(P, "8-4=4, 7-4=3")  # unfinished
    assert not cd.is_correct(P, "8-4=4, 7-4=3, 8*3=24, 24+0=24")  # a step after the end
    assert not cd.is_correct(P, "8*8=64, 64-7=57, 57-4=53")  # legal but wrong target
    assert not cd.is_correct(P, "8/3=2, 7-4=3, 8*3=24")  # illegal step
    assert not cd.is_correct(P, "") and not cd.is_correct(P, "so 24")


def test_step_labels():
    assert cd.step_labels(P, "8-4=4, 7-4=3, 8*3=24") == [True, True, True]
    assert cd.step_labels(P, "8-4=4, 8+7=15, 15+4=19") == [True, False, False]
    assert cd.step_labels(P, "8/3=2, 7-4=3") == [False, False]  # nothing after an illegal step counts
    assert cd.step_labels(P, "") == []


def test_difficulty_and_levels():
    easy = Puzzle((1, 23), 24)  # four legal steps, of which one (23+1) solves it
    assert cd.uniform_success(State(easy)) == 0.25 and cd.difficulty(easy) == 4.0 and cd.level(easy) == "easy"
    assert cd.difficulty(Puzzle((1, 1, 1, 1), 24)) == math.inf
    puzzles = cd.make_splits(n_train=300, n_validation=0, n_test=0).train
    levels = cd.by_level(puzzles)
    assert list(levels) == ["easy", "medium", "hard"] and all(len(v) > 50 for v in levels.values())
    assert sum(len(v) for v in levels.values()) == len(puzzles)


def test_make_puzzles_distinct_solvable_seeded():
    ps = cd.make_puzzles(500, seed=3)
    assert ps == cd.make_puzzles(500, seed=3) and ps != cd.make_puzzles(500, seed=4)
    assert len(set(ps)) == 500 and all(cd.solvable(p.numbers, p.target) and p.target == 24 for p in ps)
    assert all(list(p.numbers) == sorted(p.numbers) and max(p.numbers) <= 13 for p in ps)
    ranged = cd.make_puzzles(300, seed=0, n_numbers=3, max_number=9, target=(10, 30), exclude=ps[:0])
    assert all(len(p.numbers) == 3 and 10 <= p.target <= 30 and cd.solvable(p.numbers, p.target) for p in ranged)
    assert not set(cd.make_puzzles(100, seed=5, exclude=ps[:200])) & set(ps[:200])


def test_splits_are_seeded_and_disjoint():
    s = cd.make_splits(seed=3, n_train=200, n_validation=50, n_test=50)
    assert s == cd.make_splits(seed=3, n_train=200, n_validation=50, n_test=50)
    assert len(set(s.all())) == 300


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=-1), "n must"),
        (dict(n_numbers=1), "n_numbers"),
        (dict(max_number=0), "max_number"),
        (dict(target=(30, 10)), "target"),
        (dict(target=-2), "target"),
        (dict(n=2000), "distinct"),
    ],
)
def test_make_puzzles_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cd.make_puzzles(**{"n": 5, "seed": 0, **kwargs})


def test_parse_proposal_and_after_text_are_the_environment_half_of_a_step():
    s = State(Puzzle((4, 7, 8, 8), 24))
    step = cd.parse_proposal(s, "8-4")
    assert step == Step(8, "-", 4, 4) and s.after_text(step) == "=4 [4 7 8], "
    assert cd.parse_proposal(s, "9-4") is None and cd.parse_proposal(s, "8/3") is None
    assert cd.parse_proposal(s, "8-") is None and cd.parse_proposal(s, "") is None
    end = State(s.puzzle, (Step(8, "-", 4, 4), Step(7, "-", 4, 3)))
    assert end.after_text(Step(8, "*", 3, 24)) == "=24 [24]"


def test_prefixes_are_the_states_after_each_step():
    s = State(Puzzle((4, 7, 8, 8), 24), (Step(8, "-", 4, 4), Step(7, "-", 4, 3)))
    assert [len(x.steps) for x in cd.prefixes(s)] == [1, 2] and cd.prefixes(s)[-1] == s
    assert cd.prefixes(State(s.puzzle)) == []


def test_partial_states_are_every_unfinished_state_once():
    puzzle = cd.Puzzle((2, 3, 4, 5), 24)
    states = cd.partial_states(puzzle)
    texts = [s.response for s in states]
    assert len(texts) == len(set(texts)) and all(not s.is_terminal and s.steps for s in states)
    # independently, level by level: one step from the start, then one more from each of those
    one = [cd.apply_step(cd.State(puzzle), st) for st in cd.legal_steps(cd.State(puzzle))]
    two = [cd.apply_step(s, st) for s in one for st in cd.legal_steps(s)]
    assert set(texts) == {s.response for s in one + two if not s.is_terminal}
    assert any(cd.state_value(s) for s in states) and not all(cd.state_value(s) for s in states)


def test_state_features():
    state = cd.apply_step(cd.State(cd.Puzzle((2, 3, 4), 24)), cd.Step(3, "*", 2, 6))
    feats = cd.state_features(state)
    assert feats[:2] == [24, 1]
    assert feats[2 : 2 + cd.MAX_NUMBERS] == [4, 6] + [0] * (cd.MAX_NUMBERS - 2)
    assert feats[2 + cd.MAX_NUMBERS :] == [20, 18] + [24] * (cd.MAX_NUMBERS - 2)


def test_value_model_on_numbers_is_sklearns_trees_on_the_state_features():
    puzzles = cd.make_puzzles(40, seed=1)
    states = [s for p in puzzles for s in cd.partial_states(p)]
    labels = np.array([cd.state_value(s) for s in states], dtype=bool)
    value_model = cd.fit_value_model(states, labels, seed=0)
    direct = HistGradientBoostingClassifier(max_iter=300, random_state=0)
    direct.fit(np.array([cd.state_features(s) for s in states]), labels)
    held = [s for p in cd.make_puzzles(10, seed=2) for s in cd.partial_states(p)]
    values = cd.numbers_value(value_model, held)
    np.testing.assert_array_equal(values, direct.predict_proba(np.array([cd.state_features(s) for s in held]))[:, 1])
    assert values.shape == (len(held),) and ((values >= 0) & (values <= 1)).all()
    with pytest.raises(ValueError, match="states and labels"):
        cd.fit_value_model(states, labels[:-1])
    with pytest.raises(ValueError, match="threads >= 1"):
        cd.fit_value_model(states, labels, threads=0)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="scikit-learn runs one thread on one CPU")
def test_value_model_does_not_depend_on_its_thread_count():
    states = [s for p in cd.make_puzzles(40, seed=1) for s in cd.partial_states(p)]
    labels = np.array([cd.state_value(s) for s in states], dtype=bool)
    held = [s for p in cd.make_puzzles(10, seed=2) for s in cd.partial_states(p)]
    one, two = (cd.numbers_value(cd.fit_value_model(states, labels, threads=t), held) for t in (1, 2))
    np.testing.assert_array_equal(one, two)
