"""Prompt evaluation: every instruction prompt on the same queries (chapter 2).

Evaluating a prompt means running the model on it and judging each answer, so a grid of
``P`` prompts by ``Q`` queries costs ``P * Q`` model calls and as many rewards. The per
query *oracle* prompt (any prompt right on that query) bounds what a query-dependent
choice of prompt could achieve; chapter 6 learns to approach it offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irlm.adapters import sample_responses
from irlm.metrics import as_grid
from irlm.tasks import Query, get_prompt, parse_answer


@dataclass
class PromptGrid:
    """Greedy responses of every prompt on every query, and their correctness."""

    queries: list[Query]
    prompt_ids: list[str]
    texts: list[list[str]]  # [prompt][query]
    correct: np.ndarray  # bool, shape (queries, prompts)
    n_calls: int  # model calls made to fill the grid
    n_tokens: int  # tokens generated to fill the grid
    mean_logprob: np.ndarray | None = None  # the model's confidence in each response, shape (queries, prompts)

    def accuracy(self) -> dict[str, float]:
        return dict(zip(self.prompt_ids, self.correct.mean(axis=0).tolist()))


def evaluate_prompts(model, tokenizer, queries: Sequence[Query], prompt_ids: Sequence[str], **sampling) -> PromptGrid:
    """Run each prompt on each query (greedy unless ``sampling`` says otherwise) and judge it."""
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; pass at least one prompt id")
    for p in prompt_ids:
        get_prompt(p)  # raises with the allowed ids
    sampling = {"temperature": 0, **sampling}
    runs = [sample_responses(model, tokenizer, queries, p, **sampling) for p in prompt_ids]
    return PromptGrid(
        queries=list(queries),
        prompt_ids=list(prompt_ids),
        texts=[[row[0] for row in r.texts] for r in runs],
        correct=np.stack([r.correct[:, 0] for r in runs], axis=1),
        n_calls=len(queries) * len(prompt_ids),
        n_tokens=sum(r.samples.n_tokens for r in runs),
        mean_logprob=np.stack([[float(np.mean(lp)) if len(lp) else 0.0 for lp in r.samples.logprobs] for r in runs], 1),
    )


def oracle_correct(correct: np.ndarray) -> np.ndarray:
    """Per query: is *some* prompt right? (The accuracy of the per-query best prompt.)"""
    correct = as_grid(correct)
    return correct.any(axis=1)


def best_single_prompt(correct: np.ndarray) -> int:
    """Index of the prompt with the highest accuracy (the first one on ties)."""
    correct = as_grid(correct)
    return int(np.argmax(correct.mean(axis=0)))


def difficulty_bucket(query: Query) -> str:
    """A query's difficulty bucket: digits of the longer operand and carries/borrows."""
    return f"{query.n_digits}d {query.n_carries}c"


def best_prompt_per_bucket(correct: np.ndarray, buckets: Sequence[str]) -> dict[str, int]:
    """For each bucket, the index of the prompt most accurate on that bucket's queries."""
    buckets = np.asarray(buckets)
    if len(buckets) != len(correct):
        raise ValueError(f"buckets and correct must have one entry per query, got {len(buckets)} and {len(correct)}")
    return {b: best_single_prompt(np.asarray(correct)[buckets == b]) for b in sorted(set(buckets.tolist()))}


def error_type(query: Query, response: str) -> str:
    """Classify a response: ``right``, ``no answer``, ``off by a power of ten`` (a lost or
    extra carry/borrow in one column) or ``other wrong``."""
    answer = parse_answer(response)
    if answer is None:
        return "no answer"
    if answer == query.answer:
        return "right"
    gap = abs(answer - query.answer)
    return "off by a power of ten" if gap in {10**k for k in range(5)} else "other wrong"
