"""Task adapters: how a query and an instruction become model text, and back.

The tiny models of :mod:`irlm.zoo` read a plain, chat-free format::

    Q: 347+285
    Work column by column with carries.
    A: 7+5+0=12, 4+8+1=13, 3+2+1=6, so 632<|endoftext|>

A Hugging Face chat model gets the same instruction and question as a user message
through its own chat template, and its free-text reply is parsed for the final
number. Both share one interface, so every chapter runs on either (chapter 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irlm.sampling import Samples, sample
from irlm.tasks import MAX_DIGITS, Query, get_prompt, parse_answer

PLAIN_FORMAT = "irlm-plain-v1"


class PlainAdapter:
    """The tiny models' format (see module docstring)."""

    name = PLAIN_FORMAT

    def prompt(self, query: Query, prompt_id: str) -> str:
        width = MAX_DIGITS
        return f"Q: {query.a:0{width}d}{query.op}{query.b:0{width}d}\n{get_prompt(prompt_id).text}\nA: "

    def parse_answer(self, response: str) -> int | None:
        return parse_answer(response)


class ChatAdapter:
    """A Hugging Face instruction model: chat template if it has one, else plain text."""

    name = "hf-chat"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def prompt(self, query: Query, prompt_id: str) -> str:
        verb = "plus" if query.op == "+" else "minus"
        user = f"{get_prompt(prompt_id).text}\nWhat is {query.a} {verb} {query.b}? End your reply with 'so <number>'."
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
        return f"{user}\nAnswer: "

    def parse_answer(self, response: str) -> int | None:
        text = re.sub(r"(?<=\d),(?=\d{3})", "", response)
        found = re.findall(r"so\s*(-?\d+)", text) or re.findall(r"-?\d+", text)
        return int(found[-1]) if found else None


def adapter_for(model, tokenizer) -> PlainAdapter | ChatAdapter:
    """The adapter a model needs: the zoo marks its models in ``config.irlm_format``."""
    if getattr(model.config, "irlm_format", None) == PLAIN_FORMAT:
        return PlainAdapter()
    return ChatAdapter(tokenizer)


@dataclass
class Responses:
    """``n`` sampled responses for each query, parsed and checked against the truth."""

    queries: list[Query]
    prompt_id: str
    texts: list[list[str]]
    answers: list[list[int | None]]
    correct: np.ndarray  # bool, shape (n_queries, n)
    samples: Samples


def sample_responses(
    model,
    tokenizer,
    queries: Sequence[Query],
    prompt_id: str = "columns",
    n: int = 1,
    **sampling,
) -> Responses:
    """Ask the model each query ``n`` times under ``prompt_id`` and check every answer.

    ``sampling`` goes to :func:`irlm.sampling.sample` (``temperature``, ``top_k``,
    ``top_p``, ``max_new_tokens``, ``batch_size``, ``seed``); ``temperature=0`` is greedy.
    """
    if not queries:
        raise ValueError("queries is empty; pass at least one Query")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    adapter = adapter_for(model, tokenizer)
    prompts = [adapter.prompt(q, prompt_id) for q in queries for _ in range(n)]
    out = sample(model, tokenizer, prompts, **sampling)
    texts = [out.texts[i * n : (i + 1) * n] for i in range(len(queries))]
    answers = [[adapter.parse_answer(t) for t in row] for row in texts]
    correct = np.array([[a == q.answer for a in row] for q, row in zip(queries, answers)], dtype=bool)
    return Responses(list(queries), prompt_id, texts, answers, correct, out)
