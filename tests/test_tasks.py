import random

import pytest

from irlm import tasks
from irlm.tasks import PROMPTS, Query


def test_query_answer_and_text():
    q = Query(347, 285, "+")
    assert q.answer == 632 and q.text == "347+285" and Query.parse("347+285") == q
    assert Query(532, 285, "-").answer == 247


@pytest.mark.parametrize("bad", [dict(a=1, b=2, op="*"), dict(a=1, b=2, op="-"), dict(a=10_000, b=1, op="+")])
def test_query_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        Query(**bad)


def test_query_parse_rejects_garbage():
    with pytest.raises(ValueError, match="not a query"):
        Query.parse("3 times 4")


def test_column_steps_and_carries():
    assert tasks.column_steps(Query(347, 285, "+")) == [(7, 5, 0, 12), (4, 8, 1, 13), (3, 2, 1, 6)]
    assert tasks.column_steps(Query(12, 3, "-")) == [(2, 3, 0, -1), (1, 0, 1, 0), (0, 0, 0, 0)]
    assert Query(347, 285, "+").n_carries == 2
    assert Query(532, 285, "-").n_carries == 2
    assert Query(12, 3, "+").n_carries == 0


def test_expert_solution_is_checkable_and_right():
    rng = random.Random(0)
    for _ in range(300):
        q = tasks.random_query(rng)
        sol = tasks.expert_solution(q)
        assert tasks.is_correct(q, sol)
        assert all(tasks.check_steps(q, sol))


@pytest.mark.parametrize("prompt_id", sorted(PROMPTS))
def test_every_demonstrator_ends_with_an_answer(prompt_id):
    rng = random.Random(1)
    qs = [tasks.random_query(rng) for _ in range(200)]
    correct = [tasks.is_correct(q, PROMPTS[prompt_id].demonstrate(q)) for q in qs]
    if prompt_id == "debate":  # the harmful prompt: the wrong expert wins about half the debates
        assert 0.3 < sum(correct) / len(correct) < 0.7
    else:
        assert all(correct)


def test_check_steps_flags_the_wrong_step():
    q = Query(347, 285, "+")
    assert tasks.expert_solution(q) == "7+5+0=2c1, 4+8+1=3c1, 3+2+1=6c0, so 632"
    wrong = "7+5+0=2c1, 4+8+1=3c0, 3+2+0=5c0, so 532"
    assert tasks.check_steps(q, wrong) == [True, False, False, False]
    assert tasks.check_steps(q, "7+5+0=2c1, so 632") == [True, True]
    assert tasks.check_steps(q, "7+5+0=2c1, 4+8+1=3c1, 3+2+1=6c0, 0+0+0=0c0, so 632") == [True] * 3 + [False, True]
    assert tasks.check_steps(q, "") == []


def test_parse_answer():
    assert tasks.parse_answer("digits 2 3 6, so 632") == 632
    assert tasks.parse_answer("no number here") is None
    assert not tasks.is_correct(Query(1, 1, "+"), "")


def test_plausible_wrong_answer_is_wrong():
    rng = random.Random(2)
    for _ in range(500):
        q = tasks.random_query(rng)
        assert tasks.plausible_wrong_answer(q) != q.answer


def test_get_prompt_unknown_lists_allowed():
    with pytest.raises(ValueError, match="allowed"):
        tasks.get_prompt("nope")


def test_paraphrases_reword_a_prompt_and_share_its_demonstrator():
    q = Query(347, 285, "+")
    for p in tasks.PARAPHRASES.values():
        parent = tasks.get_prompt(p.paraphrase_of)
        assert tasks.get_prompt(p.id) is p and p.id not in PROMPTS
        assert p.text != parent.text and p.demonstrate(q) == parent.demonstrate(q)


def test_splits_are_seeded_and_disjoint():
    s = tasks.make_splits(seed=3, n_train=200, n_validation=50, n_test=50)
    assert s == tasks.make_splits(seed=3, n_train=200, n_validation=50, n_test=50)
    assert len(set(s.all())) == 300
    assert s.test != tasks.make_splits(seed=4, n_train=200, n_validation=50, n_test=50).test


def test_make_queries_bad_input():
    with pytest.raises(ValueError, match="digits"):
        tasks.make_queries(5, 0, digits=(0, 9))
    with pytest.raises(ValueError, match="n must be"):
        tasks.make_queries(-1, 0)
    with pytest.raises(ValueError, match="distinct"):
        tasks.make_queries(1000, 0, digits=(1, 1))


def test_dataset_round_trip(tmp_path):
    qs = tasks.make_queries(20, seed=0)
    ds = tasks.to_dataset(qs)
    assert ds.num_rows == 20 and ds[0]["answer"] == qs[0].answer
    assert tasks.from_dataset(ds) == qs
    tasks.save_queries(qs, tmp_path / "q")
    assert tasks.load_queries(tmp_path / "q") == qs


def test_arithmetic_checks_need_no_answer_key():
    q = Query(347, 285, "+")
    right = tasks.expert_solution(q)
    assert [ok for _, ok in tasks.arithmetic_checks(right)] == [True] * 4
    assert [end for end, _ in tasks.arithmetic_checks(right)] == [9, 20, 31, len(right)]
    # a wrong digit, and a final answer that does not say what the steps wrote
    wrong = "7+5+0=3c1, 4+8+1=3c1, 3+2+1=6c0, so 632"
    assert [ok for _, ok in tasks.arithmetic_checks(wrong)] == [False, True, True, False]
    # self-consistent working on a wrongly copied operand passes every check
    assert all(ok for _, ok in tasks.arithmetic_checks("7+4+0=1c1, 4+8+1=3c1, 3+2+1=6c0, so 631"))
    sub = tasks.expert_solution(Query(22, 8, "-"))
    assert all(ok for _, ok in tasks.arithmetic_checks(sub)) and sub.endswith("so 14")
    assert tasks.arithmetic_checks("no working") == []
    for q in tasks.make_queries(200, seed=1):
        assert all(ok for _, ok in tasks.arithmetic_checks(tasks.expert_solution(q)))


def test_near_miss_changes_one_digit_and_breaks_a_check():
    rng, places = random.Random(0), set()
    for q in tasks.make_queries(300, seed=2):
        right, wrong = tasks.expert_solution(q), tasks.near_miss(q, rng)
        diff = [i for i, (a, b) in enumerate(zip(right, wrong)) if a != b]
        assert len(wrong) == len(right) and len(diff) == 1 and right[diff[0]].isdigit() and wrong[diff[0]].isdigit()
        assert not all(ok for _, ok in tasks.arithmetic_checks(wrong)), wrong
        answer = wrong.split("so ")[1]
        assert len(answer) == 1 or answer[0] != "0", "no leading zero"
        # where the digit was: a result digit ("=d"), a flag ("c"/"b" before it) or the final answer
        places.add("answer" if diff[0] > right.index("so ") else "flag" if right[diff[0] - 1] in "cb" else "digit")
        assert tasks.is_correct(q, wrong) != (diff[0] > right.index("so ")), "only a changed answer is wrong"
    assert places == {"answer", "flag", "digit"}
    assert tasks.near_miss(Query(347, 285, "+"), random.Random(5)) == tasks.near_miss(
        Query(347, 285, "+"), random.Random(5)
    )
