"""Iterative fine-tuning: search makes data, the data makes a better searcher (chapter 10).

One round of expert iteration turns samples or search results into demonstrations and
fine-tunes on them,

.. math::
    D_r = \\{(x, y) : y \\sim \\pi_{r-1}(\\cdot \\mid x),\\ \\text{accept}(x, y)\\}, \\qquad
    \\pi_r = \\arg\\min_\\theta -\\sum_{(x, y) \\in D_r} \\log \\pi_\\theta(y \\mid x)
    \\ \\text{(a few epochs from } \\pi_{r-1}\\text{, or from } \\pi_0 \\text{ in ReST-EM)}.

With a binary reward :math:`R` and ``accept`` :math:`= [R(x, y) = 1]` this is an EM step on
:math:`\\mathbb E_{x} \\log \\mathbb E_{y \\sim \\pi}[R(x, y)]` (Singh et al. 2023): the E-step
samples from the posterior :math:`\\pi(y \\mid x, R = 1)` by rejection, the M-step is SFT.
The loop composes :mod:`irlm.sampling` or :mod:`irlm.search` (the samples),
:mod:`irlm.reward` or a checker (``accept``) and :mod:`irlm.sft` (the fine-tuning); what is
new here is the bookkeeping: every round's data set records where each row came from.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from irlm import sft

if TYPE_CHECKING:
    from datasets import Dataset

TYPES = {"prompt": "string", "response": "string", "method": "string", "round": "int64", "reward": "string"}
COLUMNS = tuple(TYPES)  # a round's columns: the pair, then its provenance


def round_dataset(
    prompts: Sequence[str],
    responses: Sequence[str],
    keep: Sequence[bool],
    method: str,
    round: int,
    reward: str,
) -> Dataset:
    """The accepted ``(prompt, response)`` pairs of one round as a ``datasets.Dataset``, one
    row per distinct pair, with its provenance: the ``method`` that produced it (e.g.
    ``"best-of-16"``, ``"MCTS"``), the ``round`` (1 is the first) and the ``reward`` that
    accepted it (e.g. ``"gold check"``, ``"learned ORM"``)."""
    from datasets import Dataset, Features, Value

    if not len(prompts) == len(responses) == len(keep):
        raise ValueError(
            f"prompts, responses and keep must have equal length, got {len(prompts)}, {len(responses)}, {len(keep)}"
        )
    if round < 1:
        raise ValueError(f"round must be >= 1, got {round}")
    if not method or not reward:
        raise ValueError(f"method and reward must name where the data came from, got {method!r} and {reward!r}")
    pairs = list(dict.fromkeys((p, r) for p, r, k in zip(prompts, responses, keep) if k))  # distinct, in order
    rows = {
        "prompt": [p for p, _ in pairs],
        "response": [r for _, r in pairs],
        "method": [method] * len(pairs),
        "round": [round] * len(pairs),
        "reward": [reward] * len(pairs),
    }
    return Dataset.from_dict(rows, features=Features({name: Value(t) for name, t in TYPES.items()}))


def fine_tune(
    model,
    tokenizer,
    dataset,
    epochs: float = 2.0,
    lr: float = 3e-4,
    batch_size: int = 32,
    seed: int = 0,
    threads: int = 2,
) -> int:
    """The M-step: :func:`irlm.sft.behaviour_clone` on ``dataset``'s pairs for ``epochs``
    passes (at least one step), in place. Returns the number of optimiser steps; 0, and the
    model untouched, when the round accepted nothing."""
    if epochs <= 0 or batch_size < 1:
        raise ValueError(f"need epochs > 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
    if len(dataset) == 0:
        return 0
    steps = max(1, math.ceil(epochs * len(dataset) / batch_size))
    pairs = list(zip(dataset["prompt"], dataset["response"]))
    sft.behaviour_clone(
        model, tokenizer, pairs, steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads, progress=False
    )
    return steps


class Round(NamedTuple):
    """One round of :func:`expert_iteration`: its number, the fine-tuned policy, its data set
    and the optimiser steps it took."""

    round: int
    policy: object
    dataset: object
    steps: int


def expert_iteration(
    model,
    tokenizer,
    collect: Callable[[object, int], object],
    rounds: int,
    restart: bool = False,
    epochs: float = 2.0,
    lr: float = 3e-4,
    batch_size: int = 32,
    seed: int = 0,
    threads: int = 2,
) -> list[Round]:
    """``rounds`` rounds of: ``collect(policy, round)`` -> a :func:`round_dataset`, then
    :func:`fine_tune` on it. The next round collects with the policy just trained. It fine-tunes
    that policy further (expert iteration, RAFT) or, with ``restart``, a fresh copy of
    ``model`` (STaR, ReST-EM: every round starts from the base, so errors do not compound
    through the weights). ``model`` itself is never changed."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    policy, out = model, []
    for r in range(1, rounds + 1):
        data = collect(policy, r)  # 1. sample or search with the current policy, keep what the reward accepts
        if not set(COLUMNS) <= set(data.column_names) or set(data["round"]) - {r}:
            raise ValueError(f"collect must return a round_dataset of round {r} with columns {COLUMNS}")
        start = copy.deepcopy(model if restart else policy)  # 2. fine-tune the policy, or a fresh base
        steps = fine_tune(start, tokenizer, data, epochs, lr, batch_size, seed + r, threads)
        out.append(Round(r, start, data, steps))
        policy = start
    return out
