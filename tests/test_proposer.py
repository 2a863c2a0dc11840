import numpy as np
import pytest

from irlm import countdown as cd
from irlm import search, tinygpt, zoo
from irlm.proposer import LMProposer, rollouts

SPEC = zoo.TinySpec(
    "test-countdown", n_layer=1, n_head=2, n_embd=32, vocab_size=300, steps=4, batch_size=8, warmup=2, task="countdown"
)
PUZZLE = cd.Puzzle((4, 7, 8, 8), 24)


@pytest.fixture(scope="module")
def lm():
    model, tokenizer, _ = zoo.train_tiny(SPEC, progress=False)
    return model.eval(), zoo._ready_for_sampling(tokenizer)


def test_proposals_are_legal_distinct_and_paid_for(lm):
    proposer = LMProposer(*lm, k=8, seed=0)
    out = proposer(cd.State(PUZZLE))
    assert isinstance(out, search.Proposals) and out.cost == proposer.tokens > 0
    assert len({p.step for p in out}) == len(out)
    for p in out:
        assert cd.check_step(cd.State(PUZZLE), p.step) and p.state.steps == (p.step,) and p.logprob <= 0


def test_reusing_the_parents_cache_gives_the_same_proposals_for_fewer_tokens(lm):
    state = cd.State(PUZZLE, (cd.Step(8, "-", 4, 4),))
    fresh, cached = LMProposer(*lm, seed=3, reuse_cache=False), LMProposer(*lm, seed=3, reuse_cache=True)
    cached(cd.State(PUZZLE))  # caches the parent
    fresh(cd.State(PUZZLE))
    before = (fresh.tokens, cached.tokens)
    a, b = fresh(state), cached(state)
    assert [p.step for p in a] == [p.step for p in b]
    assert np.allclose([p.logprob for p in a], [p.logprob for p in b], atol=1e-4)
    assert cached.tokens - before[1] < fresh.tokens - before[0]


def test_the_tinygpt_path_proposes_what_the_generic_path_does(lm, monkeypatch):
    child = cd.State(PUZZLE, (cd.Step(8, "-", 4, 4),))
    fast = LMProposer(*lm, seed=5)
    assert fast.fast
    expected = [fast(s) for s in (cd.State(PUZZLE), child)]
    monkeypatch.setattr(tinygpt, "supports", lambda model: False)
    generic = LMProposer(*lm, seed=5)
    for a, b in zip(expected, [generic(s) for s in (cd.State(PUZZLE), child)]):
        assert [p.step for p in a] == [p.step for p in b] and a.cost == b.cost
        np.testing.assert_allclose([p.logprob for p in a], [p.logprob for p in b], atol=1e-4)


def test_greedy_proposer_and_rollouts(lm):
    model, tok = lm
    greedy = LMProposer(model, tok, temperature=0, seed=0)
    assert len(greedy(cd.State(PUZZLE))) <= 1
    assert greedy(cd.State(PUZZLE, (cd.Step(8, "-", 4, 4), cd.Step(7, "-", 4, 3), cd.Step(8, "*", 3, 24)))) == []
    ends, tokens = rollouts(model, tok, [cd.State(PUZZLE), cd.State(PUZZLE)], n=3, seed=1)
    assert len(ends) == 6 and tokens.shape == (6,) and (tokens > 0).all()
    assert all(e.puzzle == PUZZLE for e in ends)
    again, _ = rollouts(model, tok, [cd.State(PUZZLE), cd.State(PUZZLE)], n=3, seed=1)
    assert [e.text for e in again] == [e.text for e in ends]


def test_mcts_with_the_lm_respects_a_token_budget(lm):
    proposer = LMProposer(*lm, k=4, seed=0)
    budget = search.Budget(120, unit="tokens")
    search.mcts(
        cd.State(PUZZLE), proposer, cd.state_value, lambda s: s.is_terminal, lambda s: float(s.is_solved), budget
    )
    assert budget.spent <= 120 and proposer.tokens >= budget.spent


def test_bad_input(lm):
    for kwargs in ({"k": 0}, {"temperature": -1.0}, {"max_step_tokens": 0}, {"threads": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            LMProposer(*lm, **kwargs)
    with pytest.raises(ValueError, match="n must be"):
        rollouts(*lm, [cd.State(PUZZLE)], n=0)
    with pytest.raises(ValueError, match="starts is empty"):
        rollouts(*lm, [])
