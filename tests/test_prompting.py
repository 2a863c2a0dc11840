import numpy as np
import pytest

from irlm import prompting
from irlm.adapters import sample_responses
from irlm.tasks import Query, make_queries


def test_evaluate_prompts_grid(tiny_model):
    model, tok = tiny_model
    qs = make_queries(4, seed=0)
    grid = prompting.evaluate_prompts(model, tok, qs, ["direct", "columns"], max_new_tokens=4)
    assert grid.correct.shape == (4, 2) and grid.n_calls == 8
    assert len(grid.texts) == 2 and len(grid.texts[0]) == 4
    assert set(grid.accuracy()) == {"direct", "columns"}
    assert grid.n_tokens >= 8
    assert grid.mean_logprob.shape == (4, 2) and (grid.mean_logprob <= 0).all()
    assert grid.n_generated.shape == (4, 2) and grid.n_generated.sum() == grid.n_tokens
    assert ((grid.n_generated >= 1) & (grid.n_generated <= 4)).all()


def test_evaluate_prompts_samples_each_prompt_with_its_own_seed(tiny_model):
    model, tok = tiny_model
    qs = make_queries(6, seed=0)
    grid = prompting.evaluate_prompts(model, tok, qs, ["columns", "columns"], temperature=1.0, seed=3, max_new_tokens=6)
    for i in range(2):  # prompt i draws as a direct call with seed 3 + i does
        direct = sample_responses(model, tok, qs, "columns", temperature=1.0, seed=3 + i, max_new_tokens=6)
        assert grid.texts[i] == [row[0] for row in direct.texts]
    assert grid.texts[0] != grid.texts[1]  # the same prompt twice: independent draws, not the same ones


def test_evaluate_prompts_bad_input(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        prompting.evaluate_prompts(model, tok, make_queries(2, 0), [])
    with pytest.raises(ValueError, match="allowed"):
        prompting.evaluate_prompts(model, tok, make_queries(2, 0), ["nope"])


def test_oracle_and_best_single():
    correct = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    assert prompting.oracle_correct(correct).tolist() == [True, True, True, False]
    assert prompting.best_single_prompt(correct) == 0  # tie between 0 and 1 goes to the first
    with pytest.raises(ValueError):
        prompting.oracle_correct(np.zeros((0, 2), bool))
    with pytest.raises(ValueError):
        prompting.best_single_prompt(np.zeros(3, bool))


def test_ties_are_listed_and_broken_by_the_tie_break_score():
    correct = np.array([[1, 0, 1], [0, 1, 1], [0, 1, 0]], dtype=bool)  # accuracies 1/3, 2/3, 2/3
    assert prompting.tied_best(correct) == [1, 2]
    assert prompting.tied_best(np.zeros((2, 3), bool)) == [0, 1, 2]  # all at 0: all tie
    assert prompting.best_single_prompt(correct) == 1  # no tie_break: the lowest tied index
    assert prompting.best_single_prompt(correct, tie_break=[0.9, 0.1, 0.5]) == 2  # prompt 0 is not tied
    assert prompting.best_single_prompt(np.zeros((2, 3), bool), tie_break=[0.2, 0.7, 0.7]) == 1
    with pytest.raises(ValueError, match="one score per prompt"):
        prompting.best_single_prompt(correct, tie_break=[1.0, 2.0])


def test_best_single_prompt_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        correct = rng.random((4, 3)) < 0.3
        scores = rng.random(3)
        acc = [sum(row[p] for row in correct.tolist()) for p in range(3)]  # right answers per prompt
        want = sorted(range(3), key=lambda p: (-acc[p], -scores[p], p))[0]
        assert prompting.best_single_prompt(correct, tie_break=scores) == want


def test_best_prompt_per_bucket():
    correct = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    assert prompting.best_prompt_per_bucket(correct, ["a", "a", "b", "b"]) == {"a": 0, "b": 1}
    with pytest.raises(ValueError, match="one entry per query"):
        prompting.best_prompt_per_bucket(correct, ["a"])
    # bucket "b": both prompts at 0, so the tie goes to prompt 1, the more accurate on all queries
    correct = np.array([[0, 1], [0, 1], [0, 0], [0, 0]], dtype=bool)
    assert prompting.best_prompt_per_bucket(correct, ["a", "a", "b", "b"]) == {"a": 1, "b": 1}


def test_difficulty_bucket_and_error_type():
    q = Query(347, 285, "+")
    assert prompting.difficulty_bucket(q) == "3d 2c"
    assert prompting.error_type(q, "so 632") == "right"
    assert prompting.error_type(q, "so 622") == "off by a power of ten"
    assert prompting.error_type(q, "so 532") == "off by a power of ten"
    assert prompting.error_type(q, "so 7") == "other wrong"
    assert prompting.error_type(q, "no idea") == "no answer"

    def first_number(text: str) -> int:  # a parser other than the default (the last integer)
        return int(text.split()[0])

    assert prompting.error_type(q, "632 is not 7", parse=first_number) == "right"
    assert prompting.error_type(q, "632 is not 7") == "other wrong"
