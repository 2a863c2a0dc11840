"""irlm.tinygpt computes what transformers' GPT-2 computes, on the same parameters."""

import copy

import numpy as np
import pytest
import torch

from irlm import sampling, sft, tinygpt
from irlm.adapters import PlainAdapter
from irlm.tasks import Query

DEMOS = [
    (PlainAdapter().prompt(Query(12 * i, 7 + i, "+"), "columns"), f"{i}+7+0={i + 7}, so {19 * i + 7}")
    for i in range(1, 8)
] + [(PlainAdapter().prompt(Query(3, 4, "+"), "direct"), "7")]


def test_logits_equal_transformers(tiny_model):
    model, _ = tiny_model
    ids = torch.randint(2, model.config.vocab_size, (3, 17))
    with torch.no_grad():
        ours = tinygpt.logits(model, tinygpt.hidden_states(model, ids, torch.arange(17).expand(3, 17)))
        torch.testing.assert_close(ours, model(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_pack_lays_out_each_demonstration_alone(tiny_model):
    _, tok = tiny_model
    rows = sft.encode_pairs(tok, DEMOS)
    width = 2 * max(len(p) + len(r) for p, r in rows)
    ids, positions, doc, targets = tinygpt.pack(rows, width, tok.pad_token_id)
    assert ids.shape[0] < len(rows)  # several demonstrations share a row
    found = []
    for r in range(ids.shape[0]):
        for d in doc[r].unique().tolist():
            if d == -1:
                continue
            at = (doc[r] == d).nonzero().squeeze(-1)
            assert positions[r, at].tolist() == list(range(len(at)))
            found.append((ids[r, at].tolist(), targets[r, at].tolist()))
    expected = [(p + resp, [-100] * (len(p) - 1) + resp + [-100]) for p, resp in rows]
    assert sorted(found) == sorted(expected)
    with pytest.raises(ValueError, match="width"):
        tinygpt.pack(rows, width=3, pad_id=tok.pad_token_id)


def test_packed_nll_equals_the_padded_loss(tiny_model):
    model, tok = tiny_model
    rows = sft.encode_pairs(tok, DEMOS)
    ids, mask, labels = sft.pad_batch(rows, tok.pad_token_id)
    padded = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    packed = tinygpt.packed_nll(model, *tinygpt.pack(rows, 64, tok.pad_token_id))
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(loss, model.transformer.wte.weight)[0] for loss in (packed, padded)]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_sampling_agrees_with_the_generic_path(tiny_model, monkeypatch):
    model, tok = tiny_model
    prompts = [p for p, _ in DEMOS]
    fast = sampling.sample(model, tok, prompts, temperature=0, max_new_tokens=12, batch_size=4)
    fast_t1 = sampling.sample(model, tok, prompts, temperature=1.0, max_new_tokens=12, seed=2)
    monkeypatch.setattr(tinygpt, "supports", lambda model: False)
    generic = sampling.sample(model, tok, prompts, temperature=0, max_new_tokens=12, batch_size=4)
    assert fast.token_ids == generic.token_ids
    for a, b in zip(fast.logprobs, generic.logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)
    scored = sampling.logprob_of(model, tok, prompts, fast_t1.token_ids)
    for a, b in zip(fast_t1.logprobs, scored):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_extend_and_clone_equal_the_full_forward(tiny_model):
    model, _ = tiny_model
    ids = torch.randint(2, model.config.vocab_size, (1, 11))
    with torch.no_grad():
        full = tinygpt.logits(model, tinygpt.hidden_states(model, ids, torch.arange(11)[None]))
        cache = tinygpt.KVCache(model, 1, block=4)
        torch.testing.assert_close(tinygpt.extend(model, ids[:, :7], cache, 0), full[:, 6], atol=1e-5, rtol=1e-5)
        three = cache.clone(7, repeat=3)  # a copy per continuation; the parent's cache stays as it was
        for at in range(7, 11):
            step = tinygpt.extend(model, ids[:, at : at + 1].expand(3, 1), three, at)
            torch.testing.assert_close(step, full[:, at].expand(3, -1), atol=1e-5, rtol=1e-5)
        again = tinygpt.extend(model, ids[:, 7:], cache.clone(7), 7)
        torch.testing.assert_close(again, full[:, 10], atol=1e-5, rtol=1e-5)


def test_only_plain_gpt2_is_supported(tiny_model):
    model, _ = tiny_model
    assert tinygpt.supports(model)
    lora = sft.with_lora(copy.deepcopy(model), rank=2)
    assert not tinygpt.supports(lora)
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        tinygpt.KVCache(lora, batch=1)


def test_cache_grows_and_keeps_what_was_written(tiny_model):
    model, _ = tiny_model
    cache = tinygpt.KVCache(model, batch=2, block=4)
    k = torch.randn(2, model.config.n_head, 3, model.config.n_embd // model.config.n_head)
    keys, _ = cache.write(0, k, k, at=0)
    assert keys.shape[2] == 4 and torch.equal(keys[:, :, :3], k)
    keys, values = cache.write(0, k[:, :, :2], -k[:, :, :2], at=3)
    assert keys.shape[2] == 8 and torch.equal(keys[:, :, :3], k) and torch.equal(values[:, :, 3:5], -k[:, :, :2])


def test_select_copies_the_chosen_rows(tiny_model):
    model, _ = tiny_model
    cache = tinygpt.KVCache(model, batch=3, block=4)
    k = torch.randn(3, model.config.n_head, 3, model.config.n_embd // model.config.n_head)
    cache.write(0, k, -k, at=0)
    picked = cache.select(torch.tensor([2, 0, 2, 2]))
    keys, values = picked.layers[0]
    assert keys.shape[0] == 4 and torch.equal(keys[:, :, :3], k[[2, 0, 2, 2]]) and torch.equal(values[1, :, :3], -k[0])
    keys[0] += 1  # a copy: the original cache is unchanged
    assert torch.equal(cache.layers[0][0][2, :, :3], k[2])


def test_a_repeated_prompt_is_encoded_once_with_the_same_samples(tiny_model, monkeypatch):
    model, tok = tiny_model
    prompts = [p for p, _ in DEMOS[:3] for _ in range(4)]
    seen = []
    hidden_states = tinygpt.hidden_states
    monkeypatch.setattr(
        tinygpt, "hidden_states", lambda m, ids, *a, **kw: seen.append(ids.shape) or hidden_states(m, ids, *a, **kw)
    )
    fast = sampling.sample(model, tok, prompts, temperature=1.0, max_new_tokens=8, seed=3)
    assert seen[0][0] == 3, "one prompt forward per distinct prompt"
    monkeypatch.setattr(tinygpt, "supports", lambda model: False)
    generic = sampling.sample(model, tok, prompts, temperature=1.0, max_new_tokens=8, seed=3)
    assert fast.token_ids == generic.token_ids
