import pytest
import torch

from irlm import sft
from irlm.adapters import PlainAdapter
from irlm.tasks import expert_solution, make_queries


def demos(n):
    return [(PlainAdapter().prompt(q, "columns"), expert_solution(q)) for q in make_queries(n, seed=7)]


def test_response_nll_matches_the_models_loss(tiny_model):
    model, tok = tiny_model
    ids, mask, labels = sft.pad_batch(sft.encode_pairs(tok, demos(5)), tok.pad_token_id)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.allclose(sft.response_nll(out.logits, labels), out.loss, atol=1e-5)


def test_pad_batch_masks_prompt_and_padding(tiny_model):
    _, tok = tiny_model
    rows = sft.encode_pairs(tok, demos(3))
    ids, mask, labels = sft.pad_batch(rows, tok.pad_token_id)
    for (p, r), lab, m in zip(rows, labels, mask):
        assert (lab[: len(p)] == -100).all() and lab[len(p) : len(p) + len(r)].tolist() == r
        assert m.sum() == len(p) + len(r) and (lab[len(p) + len(r) :] == -100).all()
        assert r[-1] == tok.eos_token_id


def test_behaviour_clone_lowers_the_loss_and_is_deterministic(tiny_model):
    model, tok = tiny_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    losses = sft.behaviour_clone(model, tok, demos(16), steps=30, batch_size=8, lr=3e-3, progress=False)
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5]) and not model.training
    after = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    again = sft.behaviour_clone(model, tok, demos(16), steps=30, batch_size=8, lr=3e-3, progress=False)
    assert again == losses and all(torch.equal(after[k], v) for k, v in model.state_dict().items())
    model.load_state_dict(state)


@pytest.mark.parametrize("kwargs, match", [(dict(steps=0), "steps"), (dict(lr=0.0), "lr"), (dict(pairs=[]), "empty")])
def test_behaviour_clone_bad_input(tiny_model, kwargs, match):
    model, tok = tiny_model
    args = {"pairs": demos(2), "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        sft.behaviour_clone(model, tok, progress=False, **args)


def test_demonstration_longer_than_the_model_is_refused(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="longer than"):
        sft.behaviour_clone(model, tok, [("Q: 1+1\n", "1 " * 300)], steps=1, progress=False)


def test_lora_trains_few_parameters_and_merges_back(tiny_model):
    import copy

    model, tok = tiny_model
    lora = sft.with_lora(copy.deepcopy(model), rank=2)
    assert 0 < sft.trainable_parameters(lora) < sft.trainable_parameters(model) / 5
    sft.behaviour_clone(lora, tok, demos(8), steps=3, batch_size=4, progress=False)
    merged = lora.merge_and_unload()
    assert type(merged) is type(model) and merged.num_parameters() == model.num_parameters()
    with pytest.raises(ValueError, match="rank"):
        sft.with_lora(copy.deepcopy(model), rank=0)


def test_the_generic_path_trains_on_the_models_own_loss(tiny_model, monkeypatch):
    model, tok = tiny_model
    rows = sft.encode_pairs(tok, demos(5))
    ids, mask, labels = sft.pad_batch(rows, tok.pad_token_id)
    builtin = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    monkeypatch.setattr(sft.tinygpt, "supports", lambda model: False)
    assert torch.allclose(sft.batch_nll(model, rows, tok.pad_token_id), builtin, atol=1e-5)


def test_callback_runs_after_each_step_and_changes_nothing(tiny_model):
    model, tok = tiny_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    held_out = sft.encode_pairs(tok, demos(20)[16:])
    seen, curve = [], []

    def record(step):
        seen.append(step)
        with torch.no_grad():
            curve.append(sft.batch_nll(model, held_out, tok.pad_token_id).item())

    args = dict(steps=6, batch_size=4, lr=3e-3, progress=False)
    losses = sft.behaviour_clone(model, tok, demos(16), callback=record, **args)
    with torch.no_grad():
        final = sft.batch_nll(model, held_out, tok.pad_token_id).item()
    model.load_state_dict(state)
    assert seen == list(range(6)) and curve[-1] == pytest.approx(final, abs=1e-6)
    assert sft.behaviour_clone(model, tok, demos(16), **args) == losses
    model.load_state_dict(state)


def test_lora_wrapping_warns_nothing(tiny_model):
    import copy
    import warnings

    model, _ = tiny_model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sft.with_lora(copy.deepcopy(model), rank=2)
