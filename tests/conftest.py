"""Shared fixtures: a tiny zoo spec trained in seconds, and models built locally."""

from __future__ import annotations

import pytest
import torch

from irlm import zoo

TEST_SPEC = zoo.TinySpec("test-tiny", n_layer=1, n_head=2, n_embd=32, vocab_size=300, steps=4, batch_size=8, warmup=2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty IRLM_CACHE with the test spec registered in the zoo."""
    monkeypatch.setenv("IRLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(zoo.ZOO, TEST_SPEC.name, TEST_SPEC)
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained tiny GPT-2 with the zoo's tokenizer and format (fast, no cache)."""
    model, tokenizer, _ = zoo.train_tiny(TEST_SPEC, progress=False)
    torch.manual_seed(0)
    return model, tokenizer
