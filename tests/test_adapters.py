"""The real-model path: a locally built, randomly initialised Llama with a chat template,
saved and loaded through ``irlm.zoo.load`` exactly as a Hugging Face model id would be."""

import numpy as np
import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from irlm import zoo
from irlm.adapters import ChatAdapter, PlainAdapter, adapter_for, sample_responses
from irlm.tasks import Query, make_queries

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, tiny_model):
    _, tok = tiny_model
    path = tmp_path_factory.mktemp("llama")
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


def test_hf_path_loads_and_uses_the_chat_adapter(llama_dir):
    model, tok = zoo.load(str(llama_dir))
    assert model.config.model_type == "llama"
    adapter = adapter_for(model, tok)
    assert isinstance(adapter, ChatAdapter)
    text = adapter.prompt(Query(12, 5, "-"), "columns")
    assert text.startswith("<|user|>") and "12 minus 5" in text and text.endswith("<|assistant|>\n")


def test_sample_responses_runs_on_a_real_architecture(llama_dir):
    model, tok = zoo.load(str(llama_dir))
    qs = make_queries(3, seed=0)
    r = sample_responses(model, tok, qs, "direct", n=2, max_new_tokens=6, seed=0)
    assert r.correct.shape == (3, 2) and r.correct.dtype == np.bool_
    assert len(r.texts) == 3 and all(len(row) == 2 for row in r.texts)


def test_chat_adapter_parses_free_text():
    adapter = ChatAdapter(tokenizer=None)
    assert adapter.parse_answer("Let me think. 12 - 5 = 7, so 7.") == 7
    assert adapter.parse_answer("The answer is 1,234") == 1234
    assert adapter.parse_answer("I don't know") is None


def test_plain_adapter_for_zoo_models(tiny_model):
    model, tok = tiny_model
    assert isinstance(adapter_for(model, tok), PlainAdapter)
    assert PlainAdapter().prompt(Query(1, 2, "+"), "direct") == "Q: 001+002\nAnswer directly.\nA: "


def test_sample_responses_bad_input(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="queries is empty"):
        sample_responses(model, tok, [], "direct")
    with pytest.raises(ValueError, match="n must be"):
        sample_responses(model, tok, make_queries(1, 0), "direct", n=0)
    with pytest.raises(ValueError, match="allowed"):
        sample_responses(model, tok, make_queries(1, 0), "no-such-prompt")
