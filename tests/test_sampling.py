import numpy as np
import pytest
import torch

from irlm import sampling, zoo
from irlm.adapters import PlainAdapter
from irlm.tasks import Query

PROMPTS = [PlainAdapter().prompt(Query(12, 7, "+"), "columns"), PlainAdapter().prompt(Query(3, 4, "+"), "direct")]


def test_sample_shapes_order_and_determinism(tiny_model):
    model, tok = tiny_model
    a = sampling.sample(model, tok, PROMPTS * 3, max_new_tokens=8, seed=1, batch_size=4)
    b = sampling.sample(model, tok, PROMPTS * 3, max_new_tokens=8, seed=1, batch_size=4)
    assert a.texts == b.texts and len(a.texts) == 6
    assert all(1 <= len(ids) <= 8 and len(ids) == len(lp) for ids, lp in zip(a.token_ids, a.logprobs))
    assert all((lp <= 0).all() for lp in a.logprobs)
    assert a.n_tokens == sum(len(i) for i in a.token_ids)


def test_greedy_is_argmax_and_matches_generate(tiny_model):
    model, tok = tiny_model
    ours = sampling.sample(model, tok, PROMPTS[:1], temperature=0, max_new_tokens=10)
    ids = tok(PROMPTS[0], return_tensors="pt", add_special_tokens=False)
    ref = model.generate(
        **ids, do_sample=False, max_new_tokens=10, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    assert ours.token_ids[0] == ref[0, ids["input_ids"].shape[1] :].tolist()[: len(ours.token_ids[0])]


def test_logprobs_match_logprob_of(tiny_model):
    model, tok = tiny_model
    out = sampling.sample(model, tok, PROMPTS, max_new_tokens=12, seed=3)
    scored = sampling.logprob_of(model, tok, PROMPTS, out.token_ids)
    for lp, ref in zip(out.logprobs, scored):
        np.testing.assert_allclose(lp, ref, atol=1e-4)


def test_batching_and_padding_do_not_change_scores(tiny_model):
    model, tok = tiny_model
    alone = sampling.logprob_of(model, tok, PROMPTS[:1], ["7+5"])
    batched = sampling.logprob_of(model, tok, PROMPTS, ["7+5", "1 2 3 4 5 6 7 8 9"])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-4)


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(sampling.filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(sampling.filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(sampling.filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(sampling.filter_logits(logits, top_p=1.0)).any()


def test_top_k_1_is_greedy(tiny_model):
    model, tok = tiny_model
    greedy = sampling.sample(model, tok, PROMPTS, temperature=0, max_new_tokens=6)
    top1 = sampling.sample(model, tok, PROMPTS, temperature=1.5, top_k=1, max_new_tokens=6, seed=9)
    assert greedy.token_ids == top1.token_ids


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prompts=[]), "prompts is empty"),
        (dict(prompts=[""]), "non-empty string"),
        (dict(temperature=-0.1), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_sample_bad_input(tiny_model, kwargs, match):
    model, tok = tiny_model
    kwargs = {"prompts": PROMPTS, **kwargs}
    with pytest.raises(ValueError, match=match):
        sampling.sample(model, tok, **kwargs)


def test_logprob_of_bad_input(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="equal length"):
        sampling.logprob_of(model, tok, PROMPTS, ["1"])
    with pytest.raises(ValueError, match="at least one token"):
        sampling.logprob_of(model, tok, PROMPTS[:1], [""])


def test_next_token_draws_each_token_with_its_probability():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]])
    logits = torch.log(probs).expand(20000, -1)
    drawn = sampling.next_token(logits, 1.0, 0, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=5).double() / len(drawn)
    assert freq[1] == 0 and freq[4] == 0  # impossible tokens never come
    torch.testing.assert_close(freq, probs[0].double(), atol=0.015, rtol=0)
    # top-k keeps the k most likely, renormalised
    top2 = sampling.next_token(logits, 1.0, 2, 1.0, torch.Generator().manual_seed(1))
    assert set(top2.tolist()) == {0, 2} and abs((top2 == 0).double().mean().item() - 0.625) < 0.015


def test_token_logprobs_match_logprob_of_and_carry_gradients(tiny_model):
    model, tok = tiny_model
    prompts, ids = ["Q: 001+002\nA: ", "Q: 010-003\nA: "], [[5, 6, 7], [8, 9]]
    got = sampling.token_logprobs(model, tok, prompts, ids)
    assert all(lp.requires_grad for lp in got)
    expected = sampling.logprob_of(model, tok, prompts, ids)
    assert all(np.allclose(a.detach().numpy(), b, atol=1e-5) for a, b in zip(got, expected))


def test_token_logprobs_values_and_gradients_equal_a_row_by_row_computation(tiny_model):
    model, tok = tiny_model
    prompts, ids = ["Q: 001+002\nA: ", "Q: 010-003\nA: ", "Q: 7+8\nA: "], [[5, 6, 7], [8, 9], [4, 11, 12, 13]]
    weights = torch.tensor([0.5, -1.0, 2.0])

    def row_by_row():  # each row's log-probabilities read from its own row of the logits
        rows = []
        for p, c in zip(prompts, ids):
            p_ids = tok(p, add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([p_ids + c])).logits.float()
            logp = torch.log_softmax(logits[0, len(p_ids) - 1 : len(p_ids) - 1 + len(c)], -1)
            rows.append(logp.gather(-1, torch.tensor(c)[:, None]).squeeze(-1))
        return rows

    results = []
    for compute in (lambda: sampling.token_logprobs(model, tok, prompts, ids), row_by_row):
        model.zero_grad()
        rows = compute()
        sum(w * r.sum() for w, r in zip(weights, rows)).backward()
        results.append(([r.detach() for r in rows], [p.grad.clone() for p in model.parameters()]))
    (got, got_grads), (want, want_grads) = results
    assert [len(r) for r in got] == [3, 2, 4]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got_grads, want_grads))


def test_token_ids_of_tokenizes_each_distinct_text_once(tiny_model, monkeypatch):
    _, tok = tiny_model
    texts = ["Q: 1+2\nA: ", "Q: 3+4\nA: ", "Q: 1+2\nA: "]
    calls = []

    class Counting:
        size = len(tok)

        def __call__(self, batch, **kwargs):
            calls.append(list(batch))
            return tok(batch, **kwargs)

        def __len__(self):
            return self.size

    counting = Counting()
    ids = sampling.token_ids_of(counting, texts)
    assert calls == [texts[:2]] and list(ids) == texts[:2]
    assert all(ids[t] == tok(t, add_special_tokens=False)["input_ids"] for t in texts)
    ids[texts[0]].append(-1)  # the caller's copy: the memo keeps its own
    again = sampling.token_ids_of(counting, ["Q: 5+6\nA: ", *texts])
    assert calls == [texts[:2], ["Q: 5+6\nA: "]]  # only the new text is tokenized
    assert all(again[t] == tok(t, add_special_tokens=False)["input_ids"] for t in again)
    counting.size += 1  # e.g. after add_tokens: the memo starts afresh
    sampling.token_ids_of(counting, texts)
    assert calls[-1] == texts[:2]
    before = len(calls)
    sampling.token_ids_of(Counting(), texts)  # a memo per tokenizer
    assert len(calls) == before + 1 and calls[-1] == texts[:2]
    monkeypatch.setattr(sampling, "MEMO_SIZE", 2)  # one more text would pass the size: the memo starts afresh
    sampling.token_ids_of(counting, ["Q: 5+6\nA: "])
    sampling.token_ids_of(counting, texts)  # in the memo before it was cleared
    assert calls[-2:] == [["Q: 5+6\nA: "], texts[:2]]


def test_token_ids_of_follows_the_tokenizers_added_tokens_and_special_token_splitting():
    tok = zoo.build_tokenizer(["7 -> 8", "x->y"] * 20, vocab_size=300)  # "->" is in the vocabulary
    text = "x->y 7 -> 8<|endoftext|>"
    seen = []

    def check():
        seen.append(tok(text, add_special_tokens=False)["input_ids"])
        assert sampling.token_ids_of(tok, [text])[text] == seen[-1]

    check()
    size = len(tok)
    tok.add_tokens(["->"])  # the same length, other ids
    check()
    tok.split_special_tokens = True  # the same length, other ids
    check()
    assert len(tok) == size and seen[0] != seen[1] != seen[2]
