import time

import numpy as np
import pytest

from irlm import metrics, offline_irl
from irlm.prompting import PromptGrid, oracle_correct
from irlm.tasks import make_queries

PROMPTS = ["direct", "columns", "debate"]


def make_grid(n: int = 6, seed: int = 0) -> PromptGrid:
    queries = make_queries(n, seed=seed)
    correct = np.random.default_rng(seed).random((n, len(PROMPTS))) < 0.5
    texts = [[f"{p} on {q.text}" for q in queries] for p in PROMPTS]
    return PromptGrid(queries, PROMPTS, texts, correct, n_calls=n * len(PROMPTS), n_tokens=0)


def test_logs_round_trip_to_the_grid():
    grid = make_grid()
    logs = offline_irl.offline_logs(grid)
    assert len(logs) == 18 and set(logs.column_names) == set(offline_irl.LOG_COLUMNS)
    queries, correct = offline_irl.logs_to_grid(logs, PROMPTS)
    assert queries == grid.queries and np.array_equal(correct, grid.correct)
    queries, correct = offline_irl.logs_to_grid(logs, ["debate", "direct"])
    assert np.array_equal(correct, grid.correct[:, [2, 0]])


def test_logs_to_grid_bad_input():
    logs = offline_irl.offline_logs(make_grid())
    with pytest.raises(ValueError, match="allowed"):
        offline_irl.logs_to_grid(logs, ["no-such-prompt"])
    with pytest.raises(ValueError, match="not in the log"):
        offline_irl.logs_to_grid(logs, ["round"])
    with pytest.raises(ValueError, match="empty"):
        offline_irl.logs_to_grid(logs.select([]), PROMPTS)
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        offline_irl.logs_to_grid(logs, [])


def test_pair_features_concatenates_query_and_prompt():
    q, p = np.arange(6.0).reshape(3, 2), 10 + np.arange(4.0).reshape(2, 2)
    f = offline_irl.pair_features(q, p)
    assert f.shape == (3, 2, 4)
    assert f[2, 1].tolist() == [4.0, 5.0, 12.0, 13.0]
    with pytest.raises(ValueError, match="2-D"):
        offline_irl.pair_features(np.zeros(3), p)


@pytest.mark.parametrize("kind", offline_irl.PromptRewardModel.KINDS)
def test_a_reward_model_that_sees_the_truth_chooses_like_the_oracle(kind):
    rng = np.random.default_rng(1)
    correct = rng.random((120, 4)) < 0.3
    features = np.concatenate([correct[..., None], rng.normal(size=(120, 4, 3))], axis=-1)
    rm = offline_irl.PromptRewardModel(kind, seed=0).fit(features, correct)
    scores = rm.score(features)
    assert scores.shape == (120, 4) and metrics.auc(scores.ravel(), correct.ravel()) > 0.99
    picks = offline_irl.choose_prompts(scores)
    assert np.array_equal(offline_irl.selected_correct(correct, picks), oracle_correct(correct))
    assert np.array_equal(offline_irl.PromptRewardModel(kind, seed=0).fit(features, correct).score(features), scores)


def test_prompt_reward_model_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        offline_irl.PromptRewardModel("xgboost-by-hand")
    with pytest.raises(ValueError, match="fit the reward model"):
        offline_irl.PromptRewardModel().score(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="both right and wrong"):
        offline_irl.PromptRewardModel().fit(np.zeros((5, 2, 3)), np.ones((5, 2), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        offline_irl.PromptRewardModel().fit(np.zeros((5, 3, 3)), np.ones((5, 2), dtype=bool))


def test_choose_prompts_takes_the_first_best_and_checks_input():
    assert offline_irl.choose_prompts(np.array([[0.2, 0.9, 0.9], [0.5, 0.1, 0.0]])).tolist() == [1, 0]
    for bad in [np.zeros(3), np.zeros((0, 2)), np.array([[np.nan, 1.0]])]:
        with pytest.raises(ValueError):
            offline_irl.choose_prompts(bad)
    with pytest.raises(ValueError, match="one prompt index"):
        offline_irl.selected_correct(np.ones((2, 2), dtype=bool), [0, 2])


def test_cost_meter_counts_calls_tokens_and_time():
    meter = offline_irl.CostMeter()
    with meter:
        meter.record(calls=3, tokens=40)
        time.sleep(0.01)
    meter.record(calls=2)
    assert (meter.calls, meter.tokens) == (5, 40) and meter.seconds >= 0.01
    with pytest.raises(ValueError, match=">= 0"):
        meter.record(calls=-1)


def test_check_prompt_split():
    offline_irl.check_prompt_split(["direct", "columns"], ["genius", "ones_first"])
    for seen, held, match in [
        (["direct"], [], "at least two"),
        (["direct", "direct"], [], "at least two"),
        (["direct", "columns"], ["genius", "genius"], "repeats"),
        (["direct", "columns"], ["columns"], "both logged and held out"),
        (["direct", "columns"], ["nope"], "allowed"),
    ]:
        with pytest.raises(ValueError, match=match):
            offline_irl.check_prompt_split(seen, held)


def test_embed_queries_and_prompts_applies_the_embedder_to_both_texts():
    queries = make_queries(3, seed=0)
    qf, pf = offline_irl.embed_queries_and_prompts(lambda texts: np.array([[len(t)] for t in texts]), queries, PROMPTS)
    assert qf[:, 0].tolist() == [len(q.text) for q in queries]
    assert pf[:, 0].tolist() == [len("Answer directly."), len("Work column by column with carries."), 30]
    with pytest.raises(ValueError, match="non-empty"):
        offline_irl.embed_queries_and_prompts(len, [], PROMPTS)


def test_rank_prompts_and_vote_over_top_k():
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.7, 0.2]])
    order = offline_irl.rank_prompts(scores)
    assert order.tolist() == [[1, 2, 0], [0, 1, 2]]
    answers = [[5, 7, 5], [3, 4, None]]
    assert offline_irl.vote_over_top_k(answers, order, 1).tolist() == [1, 0]
    assert offline_irl.vote_over_top_k(answers, order, 3).tolist() == [2, 0]  # 5 wins 2:1; a 3-4 tie
    with pytest.raises(ValueError, match="k must lie"):
        offline_irl.vote_over_top_k(answers, order, 4)
    with pytest.raises(ValueError, match="order must have shape"):
        offline_irl.vote_over_top_k(answers[:1], order, 1)
    with pytest.raises(ValueError, match="non-empty"):
        offline_irl.rank_prompts(np.zeros(3))


def test_lookup_prompts_is_the_best_prompt_per_key_on_the_logs():
    # prompt 0 is right on every "+" query, prompt 1 on every "-" query, prompt 2 never
    keys = ["+", "-", "+", "-", "+"]
    correct = np.array([[k == "+", k == "-", False] for k in keys])
    picks = offline_irl.lookup_prompts(correct, keys, ["-", "+", "*"])
    assert picks.tolist() == [1, 0, 0]  # an unseen key gets the best single prompt (0: 3 of 5 right)
    by_hand = [int(np.argmax(correct[np.array(keys) == k].mean(0))) for k in ["-", "+"]]
    assert picks[:2].tolist() == by_hand
    with pytest.raises(ValueError, match="one entry per query"):
        offline_irl.lookup_prompts(correct, keys[:2], ["+"])


def test_prompt_subsets_all_or_a_uniform_draw():
    assert offline_irl.prompt_subsets(4, 2, max_subsets=10) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    drawn = offline_irl.prompt_subsets(6, 3, max_subsets=5, seed=1)
    assert len(drawn) == len(set(drawn)) == 5 and all(len(s) == 3 and list(s) == sorted(s) for s in drawn)
    assert drawn == offline_irl.prompt_subsets(6, 3, max_subsets=5, seed=1)
    # each prompt is in a subset with probability k/n: the draw is uniform over subsets
    counts = np.zeros(6)
    for seed in range(400):
        for s in offline_irl.prompt_subsets(6, 3, max_subsets=2, seed=seed):
            counts[list(s)] += 1
    assert np.allclose(counts / 800, 0.5, atol=0.05)
    for args, match in [((3, 0, 2), "k must lie"), ((3, 4, 2), "k must lie"), ((3, 2, 0), "max_subsets")]:
        with pytest.raises(ValueError, match=match):
            offline_irl.prompt_subsets(*args)


def test_most_confident_of_top_k():
    confidence = np.array([[-0.1, -2.0, -0.5], [-1.0, -1.0, -0.2]])
    order = np.array([[1, 2, 0], [0, 1, 2]])
    assert offline_irl.most_confident_of_top_k(confidence, order, 1).tolist() == [1, 0]
    assert offline_irl.most_confident_of_top_k(confidence, order, 2).tolist() == [2, 0]  # a tie: the higher rank
    assert offline_irl.most_confident_of_top_k(confidence, order, 3).tolist() == [0, 2]
    assert offline_irl.most_confident_of_top_k(confidence, order, 3).tolist() == np.argmax(confidence, 1).tolist()
    with pytest.raises(ValueError, match="k must lie"):
        offline_irl.most_confident_of_top_k(confidence, order, 0)
    with pytest.raises(ValueError, match="shape"):
        offline_irl.most_confident_of_top_k(confidence[:1], order, 1)
