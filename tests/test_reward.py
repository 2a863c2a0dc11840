import numpy as np
import pytest

from irlm import reward, tasks
from irlm.adapters import PlainAdapter
from irlm.tasks import expert_solution, make_queries, plausible_wrong_answer


def test_best_of_n_picks_argmax_first_on_ties():
    samples = [["a", "b", "c"], ["d", "e", "f"]]
    scores = np.array([[0.1, 0.9, 0.9], [0.5, 0.2, 0.7]])
    choice = reward.best_of_n(samples, scores, n=3)
    assert choice.index.tolist() == [1, 2] and choice.samples == ["b", "f"]
    assert reward.best_of_n(samples, scores, n=1).index.tolist() == [0, 0]
    assert reward.best_of_n(samples, scores, n=2).samples == ["b", "d"]


@pytest.mark.parametrize(
    "n, scores", [(0, np.zeros((2, 3))), (4, np.zeros((2, 3))), (1, np.zeros(3)), (2, np.full((2, 3), np.nan))]
)
def test_best_of_n_bad_input(n, scores):
    with pytest.raises(ValueError):
        reward.best_of_n([["a"] * 3, ["b"] * 3], scores, n)


def test_majority_vote():
    answers = [[1, 2, 2, 1], [None, None, 3, 4], [None, None], [5, 6, 6, 6]]
    assert reward.majority_vote(answers[:2], n=4).tolist() == [0, 2]
    assert reward.majority_vote([answers[2]], n=2).tolist() == [0]
    assert reward.majority_vote([answers[3]], n=2).tolist() == [0]
    assert reward.majority_vote([answers[3]], n=4).tolist() == [1]
    with pytest.raises(ValueError):
        reward.majority_vote([[1]], n=2)
    with pytest.raises(ValueError):
        reward.majority_vote([], n=1)


def test_best_of_n_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    n, draws = 4, 400_000
    # best-of-n of a continuous reward: the chosen sample's rank among n uniforms;
    # its density on [0, 1] is n u^(n-1), so KL = E[log(n u^(n-1))]
    u = rng.random((draws, n)).max(axis=1)
    mc = np.mean(np.log(n) + (n - 1) * np.log(u))
    assert reward.best_of_n_kl(n) == pytest.approx(mc, abs=0.01)
    assert reward.best_of_n_kl(1) == 0.0
    assert np.allclose(reward.best_of_n_kl(np.array([1, 2])), [0.0, np.log(2) - 0.5])
    with pytest.raises(ValueError):
        reward.best_of_n_kl(0)


def test_fit_gao_recovers_parameters():
    kl = reward.best_of_n_kl(np.array([1, 2, 4, 8, 16, 32, 64]))
    d = np.sqrt(kl)
    alpha, beta = reward.fit_gao_best_of_n(kl, d * (0.5 - 0.2 * d))
    assert alpha == pytest.approx(0.5) and beta == pytest.approx(0.2)
    with pytest.raises(ValueError):
        reward.fit_gao_best_of_n(kl, d[:3])


def right_and_wrong(n: int, seed: int) -> tuple[list[str], list[str], list[bool]]:
    """n queries answered twice: the expert's working (right), then a bare wrong answer."""
    qs = make_queries(n, seed=seed)
    prompts = [PlainAdapter().prompt(q, "columns") for q in qs] * 2
    responses = [expert_solution(q) for q in qs] + [f"so {plausible_wrong_answer(q)}" for q in qs]
    return prompts, responses, [True] * n + [False] * n


def test_orm_learns_to_separate_right_from_wrong(tiny_model):
    model, tok = tiny_model
    prompts, responses, labels = right_and_wrong(40, seed=3)
    orm = reward.train_orm(model, tok, prompts, responses, labels, steps=40, batch_size=16, lr=3e-3, progress=False)
    scores = reward.score(orm, tok, prompts, responses)
    assert scores.shape == (80,) and scores[:40].mean() > scores[40:].mean()
    again = reward.train_orm(model, tok, prompts, responses, labels, steps=40, batch_size=16, lr=3e-3, progress=False)
    assert np.array_equal(reward.score(again, tok, prompts, responses), scores)


def test_orm_bad_input(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="equal length"):
        reward.train_orm(model, tok, ["a"], ["b", "c"], [True])
    with pytest.raises(ValueError, match="steps"):
        reward.train_orm(model, tok, ["a"], ["b"], [True], steps=0)
    with pytest.raises(ValueError, match="equal length"):
        reward.score(None, tok, [], [])


def test_flip_labels_flips_at_the_requested_rate():
    labels = np.zeros(20_000, dtype=bool)
    assert reward.flip_labels(labels, 0.3, seed=1).mean() == pytest.approx(0.3, abs=0.01)
    assert np.array_equal(reward.flip_labels(labels, 0.3, seed=1), reward.flip_labels(labels, 0.3, seed=1))
    assert not reward.flip_labels(labels, 0.0).any() and reward.flip_labels(labels, 1.0).all()
    with pytest.raises(ValueError, match="rate"):
        reward.flip_labels(labels, 1.5)


def test_rejection_sampling_set_keeps_the_chosen_rows():
    ds = reward.rejection_sampling_set(["p1", "p2", "p3"], ["r1", "r2", "r3"], [True, False, True])
    assert ds["prompt"] == ["p1", "p3"] and ds["response"] == ["r1", "r3"]
    assert len(reward.rejection_sampling_set(["p"], ["r"], [False])) == 0
    with pytest.raises(ValueError, match="equal length"):
        reward.rejection_sampling_set(["p"], ["r", "s"], [True])


def test_best_of_n_expected_matches_brute_force_over_subsets():
    from itertools import combinations

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(6, 7)).astype(float)  # many ties
    correct = rng.random((6, 7)) < 0.5
    for n in (1, 2, 3, 7):
        got = reward.best_of_n_expected(scores, correct, n)
        for q in range(6):
            values = []
            for subset in combinations(range(7), n):
                s = scores[q, list(subset)]
                top = [j for j, v in zip(subset, s) if v == s.max()]
                values.append(np.mean(correct[q, top]))  # ties broken uniformly
            assert got[q] == pytest.approx(np.mean(values))
    assert reward.best_of_n_expected(scores, correct, 1) == pytest.approx(correct.mean(axis=1))


def test_best_of_n_expected_rejects_bad_input():
    with pytest.raises(ValueError, match="n must lie"):
        reward.best_of_n_expected(np.zeros((2, 3)), np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="one shape"):
        reward.best_of_n_expected(np.zeros((2, 3)), np.zeros((2, 2)), 1)


def test_majority_vote_expected_is_the_subset_average():
    answers = [[1, 1, 2, 2, 3], [5, None, 5, 6, 6]]
    correct = np.array([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0]], dtype=bool)
    assert reward.majority_vote_expected(answers, correct, 1) == pytest.approx(correct.mean(axis=1))
    full = reward.majority_vote_expected(answers, correct, 5)
    assert full.tolist() == [1.0, 1.0]  # ties go to the first sample of the most frequent answers
    mc = reward.majority_vote_expected(answers, correct, 3, draws=4000, seed=1)
    from itertools import permutations

    exact = []  # every ordered subset: ties among answers broken uniformly
    for row, c in zip(answers, correct):
        vals = []
        for idx in permutations(range(5), 3):
            pick = reward.majority_vote([[row[j] for j in idx]], 3)[0]
            vals.append(c[idx[pick]])
        exact.append(np.mean(vals))
    assert mc == pytest.approx(exact, abs=0.03)
    with pytest.raises(ValueError, match="draws"):
        reward.majority_vote_expected(answers, correct, 2, draws=0)


def test_confidence_features_match_a_direct_computation():
    lp = [np.log([0.9, 0.4, 0.15, 0.8]), np.log([0.6])]
    f = reward.confidence_features(lp)
    assert f.shape == (2, len(reward.CONFIDENCE_FEATURES))
    assert f[0] == pytest.approx(
        [np.log(0.9 * 0.4 * 0.15 * 0.8), np.log(0.9 * 0.4 * 0.15 * 0.8) / 4, np.log(0.15), np.log(0.15 * 0.4), 2, 1]
    )
    assert f[1] == pytest.approx([np.log(0.6), np.log(0.6), np.log(0.6), np.log(0.6), 0, 0])
    with pytest.raises(ValueError, match="at least one token"):
        reward.confidence_features([np.array([])])


def test_confidence_rm_learns_which_feature_predicts_the_label():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 3))
    y = x[:, 1] + 0.3 * rng.standard_normal(400) > 0
    rm = reward.train_confidence_rm(x, y)
    w = rm[-1].coef_[0]
    assert abs(w[1]) > 5 * max(abs(w[0]), abs(w[2]))
    from irlm import metrics

    assert metrics.auc(rm.decision_function(x), y) > 0.95
    with pytest.raises(ValueError, match="both right and wrong"):
        reward.train_confidence_rm(x, np.ones(400, bool))
    with pytest.raises(ValueError, match="l2"):
        reward.train_confidence_rm(x, y, l2=0)


def test_step_verifier_reads_each_check_where_its_text_ends(tiny_model):
    model, tok = tiny_model
    qs = make_queries(30, seed=5)
    prompts = [PlainAdapter().prompt(q, "columns") for q in qs]
    right = [expert_solution(q) for q in qs]
    wrong = [r[:-1] + str((int(r[-1]) + 1) % 10) for r in right]  # the final answer off by one
    responses, checks = right + wrong, [tasks.arithmetic_checks(r) for r in right + wrong]
    assert all(ok for row in checks[:30] for _, ok in row) and not any(row[-1][1] for row in checks[30:])
    pos, lab, keep = reward._check_positions(tok, prompts * 2, responses, checks, "cpu")
    for i, (p, r, row) in enumerate(zip(prompts * 2, responses, checks)):
        text = tok.decode(tok(p + r, add_special_tokens=False)["input_ids"][: int(pos[i, len(row) - 1]) + 1])
        assert text == p + r[: row[-1][0]]  # the last check is read at the token that ends its text
        assert keep[i].sum() == len(row) and lab[i, : len(row)].tolist() == [float(ok) for _, ok in row]
    verifier = reward.train_step_verifier(
        model, tok, prompts * 2, responses, checks, steps=30, batch_size=16, lr=3e-3, progress=False
    )
    scores = reward.score(verifier, tok, prompts * 2, responses, checks=checks)
    assert scores.shape == (60,) and (scores <= 0).all() and scores[:30].mean() > scores[30:].mean()
    with pytest.raises(ValueError, match="exactly when orm is a StepVerifier"):
        reward.score(verifier, tok, prompts, right)
    with pytest.raises(ValueError, match="no check"):
        reward.train_step_verifier(model, tok, ["a"], ["b"], [[]])


def test_callback_sees_every_step_and_mean_loss_is_the_training_objective(tiny_model):
    model, tok = tiny_model
    n = 24
    prompts, responses, labels = right_and_wrong(n, seed=7)
    seen = []

    def record(step, rm, loss):
        seen.append((step, rm.training, loss, reward.mean_loss(rm, tok, prompts, responses, labels)))

    kw = dict(steps=6, batch_size=8, lr=3e-3, progress=False)
    orm = reward.train_orm(model, tok, prompts, responses, labels, callback=record, **kw)
    assert [s for s, *_ in seen] == list(range(6)) and all(training for _, training, *_ in seen)  # mode restored
    plain = reward.train_orm(model, tok, prompts, responses, labels, **kw)  # the callback changes nothing
    logits = reward.score(orm, tok, prompts, responses)
    assert np.array_equal(reward.score(plain, tok, prompts, responses), logits)
    z = np.array(labels, dtype=float)  # the logistic loss from the scores, by hand
    by_hand = -np.mean(z * np.log(1 / (1 + np.exp(-logits))) + (1 - z) * np.log(1 / (1 + np.exp(logits))))
    assert seen[-1][3] == pytest.approx(by_hand, rel=1e-5)
    assert reward.mean_loss(orm, tok, prompts, responses, labels, batch_size=5) == pytest.approx(by_hand, rel=1e-5)
    # a step verifier on right working only: its loss is minus the mean log-probability per check
    right, checks = responses[:n], [tasks.arithmetic_checks(r) for r in responses[:n]]
    verifier = reward.train_step_verifier(model, tok, prompts[:n], right, checks, **kw)
    total = reward.score(verifier, tok, prompts[:n], right, checks=checks).sum()
    expected = -total / sum(len(row) for row in checks)
    assert reward.mean_loss(verifier, tok, prompts[:n], right, checks, batch_size=7) == pytest.approx(expected)
    with pytest.raises(ValueError, match="equal length"):
        reward.mean_loss(orm, tok, prompts, responses, labels[:3])


def test_score_scores_repeated_items_once_and_alike(tiny_model):
    model, tok = tiny_model
    qs = make_queries(6, seed=9)
    prompts = [PlainAdapter().prompt(q, "columns") for q in qs]
    responses = [expert_solution(q) for q in qs]
    orm = reward.train_orm(model, tok, prompts, responses, [True, False] * 3, steps=2, batch_size=4, progress=False)
    order = [0, 1, 0, 2, 1, 0, 3, 4, 5, 5]
    scores = reward.score(orm, tok, [prompts[i] for i in order], [responses[i] for i in order], batch_size=2)
    alone = np.array([reward.score(orm, tok, [prompts[i]], [responses[i]])[0] for i in order])
    assert scores[0] == scores[2] == scores[5] and scores[1] == scores[4] and scores[8] == scores[9]
    assert scores == pytest.approx(alone, abs=1e-5)
    checks = [tasks.arithmetic_checks(r) for r in responses]
    verifier = reward.train_step_verifier(model, tok, prompts, responses, checks, steps=2, batch_size=4, progress=False)
    got = reward.score(
        verifier, tok, [prompts[i] for i in order], [responses[i] for i in order], checks=[checks[i] for i in order]
    )
    alone = [reward.score(verifier, tok, [prompts[i]], [responses[i]], checks=[checks[i]])[0] for i in order]
    assert got[0] == got[2] and got == pytest.approx(alone, abs=1e-5)
