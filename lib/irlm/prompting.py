"""Prompt evaluation: every instruction prompt on the same queries (chapter 2).

Evaluating a prompt means running the model on it and judging each answer, so a grid of
``P`` prompts by ``Q`` queries costs ``P * Q`` model calls and as many rewards. The per
query *oracle* prompt (any prompt right on that query) bounds what a query-dependent
choice of prompt could achieve; chapter 6 learns to approach it offline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    n_generated: np.ndarray | None = None  # tokens per response, stop token included, shape (queries, prompts)

    def accuracy(self) -> dict[str, float]:
        return dict(zip(self.prompt_ids, self.correct.mean(axis=0).tolist()))


def evaluate_prompts(model, tokenizer, queries: Sequence[Query], prompt_ids: Sequence[str], **sampling) -> PromptGrid:
    """Run each prompt on each query (greedy unless ``sampling`` says otherwise) and judge it.

    Prompt ``i`` samples with ``seed + i`` (``seed`` from ``sampling``, default 0): at a
    temperature above 0 the prompts' responses are then independent draws, not draws
    from the same random numbers.
    """
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; pass at least one prompt id")
    for p in prompt_ids:
        get_prompt(p)  # raises with the allowed ids
    sampling = {"temperature": 0, **sampling}
    seed = sampling.pop("seed", 0)
    runs = [sample_responses(model, tokenizer, queries, p, seed=seed + i, **sampling) for i, p in enumerate(prompt_ids)]
    return PromptGrid(
        queries=list(queries),
        prompt_ids=list(prompt_ids),
        texts=[[row[0] for row in r.texts] for r in runs],
        correct=np.stack([r.correct[:, 0] for r in runs], axis=1),
        n_calls=len(queries) * len(prompt_ids),
        n_tokens=sum(r.samples.n_tokens for r in runs),
        mean_logprob=np.stack([[float(np.mean(lp)) if len(lp) else 0.0 for lp in r.samples.logprobs] for r in runs], 1),
        n_generated=np.array([[len(ids) for ids in r.samples.token_ids] for r in runs]).T,
    )


def oracle_correct(correct: np.ndarray) -> np.ndarray:
    """Per query: is *some* prompt right? (The accuracy of the per-query best prompt.)"""
    correct = as_grid(correct)
    return correct.any(axis=1)


def tied_best(correct: np.ndarray) -> list[int]:
    """Indices of every prompt at the highest accuracy (mean over queries of ``correct``):
    one index, unless prompts tie; every index when all prompts score the same (e.g. 0)."""
    accuracy = as_grid(correct).mean(axis=0)
    return np.flatnonzero(accuracy == accuracy.max()).tolist()


def best_single_prompt(correct: np.ndarray, tie_break: Sequence[float] | None = None) -> int:
    """Index of the prompt with the highest accuracy, argmax_p mean_q correct[q, p].

    Ties (:func:`tied_best` lists them) go to the tied prompt with the highest
    ``tie_break`` score (one number per prompt, e.g. its accuracy on more queries), and
    any tie left after that to the lowest index.
    """
    tied = tied_best(correct)
    if tie_break is None:
        return tied[0]
    scores, n_prompts = np.asarray(tie_break, dtype=float), as_grid(correct).shape[1]
    if scores.shape != (n_prompts,):
        raise ValueError(f"tie_break must have one score per prompt ({n_prompts}), got shape {scores.shape}")
    return max(tied, key=lambda i: (scores[i], -i))


def difficulty_bucket(query: Query) -> str:
    """A query's difficulty bucket: digits of the longer operand and carries/borrows."""
    return f"{query.n_digits}d {query.n_carries}c"


def best_prompt_per_bucket(correct: np.ndarray, buckets: Sequence[str]) -> dict[str, int]:
    """For each bucket, the index of the prompt most accurate on that bucket's queries.

    Ties within a bucket go to the prompt most accurate on all the queries, so a bucket
    where the prompts tie (all at 0, say) falls back to the best single prompt.
    """
    correct, buckets = as_grid(correct), np.asarray(buckets)
    if len(buckets) != len(correct):
        raise ValueError(f"buckets and correct must have one entry per query, got {len(buckets)} and {len(correct)}")
    overall = correct.mean(axis=0)
    return {b: best_single_prompt(correct[buckets == b], overall) for b in sorted(set(buckets.tolist()))}


def error_type(query: Query, response: str, parse: Callable[[str], int | None] = parse_answer) -> str:
    """Classify a response: ``right``, ``no answer``, ``off by a power of ten`` (a lost or
    extra carry/borrow in one column) or ``other wrong``.

    ``parse`` reads the final answer; pass the model's adapter's ``parse_answer`` for a
    Hugging Face model (the default reads the zoo models' format).
    """
    answer = parse(response)
    if answer is None:
        return "no answer"
    if answer == query.answer:
        return "right"
    gap = abs(answer - query.answer)
    return "off by a power of ten" if gap in {10**k for k in range(5)} else "other wrong"
