import numpy as np
import pytest

from irlm import prompting
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


def test_best_prompt_per_bucket():
    correct = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    assert prompting.best_prompt_per_bucket(correct, ["a", "a", "b", "b"]) == {"a": 0, "b": 1}
    with pytest.raises(ValueError, match="one entry per query"):
        prompting.best_prompt_per_bucket(correct, ["a"])


def test_difficulty_bucket_and_error_type():
    q = Query(347, 285, "+")
    assert prompting.difficulty_bucket(q) == "3d 2c"
    assert prompting.error_type(q, "so 632") == "right"
    assert prompting.error_type(q, "so 622") == "off by a power of ten"
    assert prompting.error_type(q, "so 532") == "off by a power of ten"
    assert prompting.error_type(q, "so 7") == "other wrong"
    assert prompting.error_type(q, "no idea") == "no answer"
