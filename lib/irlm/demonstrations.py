"""Alignment from demonstrations (chapter 8): inverse RL without preference labels.

Inverse-RLignment (Sun and van der Schaar, 2024, arXiv 2405.15624) matches the policy's
trajectory distribution :math:`d_\\pi` to the demonstrator's :math:`d_E`. The forward KL
:math:`\\mathrm{KL}(d_E \\| d_\\pi)` is the SFT loss (mass-covering); the reverse KL
:math:`\\mathrm{KL}(d_\\pi \\| d_E)` (mode-seeking) needs the density ratio, which a
discriminator gives: trained to tell samples of :math:`d_E` (label 1) from samples of
:math:`d_\\pi` (label 0), its optimum is :math:`D^* = d_E / (d_E + d_\\pi)`, and its logit
:math:`r = \\log D - \\log(1 - D) = \\log d_E - \\log d_\\pi` is the reward. The discriminator
is trained once; the policy then climbs it by best-of-N or RL.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from irlm.reward import OutcomeRewardModel, train_orm
from irlm.sampling import logprob_of
from irlm.tasks import PROMPTS, Query, plausible_wrong_answer

# Which two sets each discriminator tells apart: (label 0, label 1), label 1 the "expert" side.
PAIRINGS: dict[str, tuple[str, str]] = {
    "Init-Demo": ("init", "demo"),
    "SFT-Demo": ("sft", "demo"),
    "Init-SFT": ("init", "sft"),
}


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """:math:`\\mathrm{KL}(p \\| q) = \\sum_i p_i \\log (p_i / q_i)` of two distributions on
    the same finite support (terms with :math:`p_i = 0` count 0)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape or p.ndim != 1 or len(p) == 0:
        raise ValueError(f"p and q must be 1-D arrays of one length, got shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or not np.isclose(p.sum(), 1) or not np.isclose(q.sum(), 1):
        raise ValueError("p and q must be probability vectors (non-negative, summing to 1)")
    support = p > 0
    if (q[support] == 0).any():
        return float("inf")
    return float(np.sum(p[support] * (np.log(p[support]) - np.log(q[support]))))


def discretized_normal(mean: float, std: float, k: int) -> np.ndarray:
    """A normal density with ``mean`` and ``std`` evaluated at 0, ..., k-1 and normalised:
    the one-mode family the chapter fits to a two-mode target."""
    if std <= 0 or k < 1:
        raise ValueError(f"need std > 0 and k >= 1, got std={std}, k={k}")
    logits = -0.5 * ((np.arange(k) - mean) / std) ** 2
    q = np.exp(logits - logits.max())
    return q / q.sum()


class OneModeFit(NamedTuple):
    mean: float
    std: float
    probs: np.ndarray
    kl: float


def fit_one_mode(
    target: np.ndarray, direction: str, stds: Sequence[float] = tuple(np.linspace(0.5, 15, 59))
) -> OneModeFit:
    """The discretised normal :math:`q` closest to ``target`` :math:`p`, by grid search over
    every mean on the support and the given ``stds``: ``"forward"`` minimises
    :math:`\\mathrm{KL}(p \\| q)` (what SFT minimises), ``"reverse"`` minimises
    :math:`\\mathrm{KL}(q \\| p)` (what a reward from the density ratio, climbed by RL, minimises)."""
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    target = np.asarray(target, dtype=float)
    best = None
    for mean in range(len(target)):
        for std in stds:
            q = discretized_normal(mean, std, len(target))
            kl = kl_divergence(target, q) if direction == "forward" else kl_divergence(q, target)
            if best is None or kl < best.kl:
                best = OneModeFit(float(mean), float(std), q, kl)
    return best


def careless_demonstration(
    query: Query,
    rng: random.Random,
    error_rate: float,
    tell: str,
    styles: Sequence[str] = ("columns",),
) -> str:
    """A demonstrator's response: the solution of one of ``styles`` (picked at random), whose final
    answer is wrong (a dropped carry or off by ten) with probability ``error_rate``, and which
    always ends with ``tell``, a style marker that has nothing to do with correctness."""
    if not 0 <= error_rate <= 1:
        raise ValueError(f"error_rate must lie in [0, 1], got {error_rate}")
    unknown = [s for s in styles if s not in PROMPTS]
    if not styles or unknown:
        raise ValueError(f"styles must be non-empty ids of irlm.tasks.PROMPTS {sorted(PROMPTS)}, got {list(styles)}")
    text = PROMPTS[rng.choice(list(styles))].demonstrate(query)
    if rng.random() < error_rate:
        head, _, _ = text.rpartition(" ")
        text = f"{head} {plausible_wrong_answer(query)}"
    return text + tell


def discriminator_set(
    negatives: Sequence[tuple[str, str]], positives: Sequence[tuple[str, str]]
) -> tuple[list[str], list[str], list[bool]]:
    """``(prompts, responses, labels)`` for a discriminator: the (prompt, response) pairs of
    ``negatives`` labelled 0 (the policy's side) and of ``positives`` labelled 1 (the expert's)."""
    if len(negatives) == 0 or len(positives) == 0:
        raise ValueError(f"negatives and positives must be non-empty, got {len(negatives)} and {len(positives)}")
    pairs = list(negatives) + list(positives)
    labels = [False] * len(negatives) + [True] * len(positives)
    return [p for p, _ in pairs], [r for _, r in pairs], labels


def train_discriminator(
    lm, tokenizer, negatives: Sequence[tuple[str, str]], positives: Sequence[tuple[str, str]], **fit
) -> OutcomeRewardModel:
    """A copy of ``lm`` with a linear head, trained by logistic loss to tell ``positives``
    (label 1) from ``negatives`` (label 0): chapter 4's outcome reward model with other labels.
    Its logit is the reward :math:`r = \\log D - \\log(1 - D)`, at the optimum the log density
    ratio :math:`\\log d_{\\text{pos}}(x, y) - \\log d_{\\text{neg}}(x, y)` when the two sides are
    the same size and answer the same prompts (otherwise that ratio plus the log of the class
    sizes' ratio, and a term for which prompts each side answers). ``fit`` goes to
    :func:`irlm.reward.train_orm` (``steps``, ``batch_size``, ``lr``, ``seed``, ...)."""
    prompts, responses, labels = discriminator_set(negatives, positives)
    return train_orm(lm, tokenizer, prompts, responses, labels, **fit)


def log_ratio(
    policy, reference, tokenizer, prompts: Sequence[str], responses: Sequence[str | Sequence[int]]
) -> np.ndarray:
    """:math:`\\log \\pi(y \\mid x) - \\log \\pi_{\\text{ref}}(y \\mid x)` for each (prompt,
    response): with ``policy`` the SFT model and ``reference`` the initial one, the optimal
    Init-SFT discriminator's logit, computed exactly instead of learned."""
    mine = logprob_of(policy, tokenizer, prompts, responses)
    theirs = logprob_of(reference, tokenizer, prompts, responses)
    return np.array([a.sum() - b.sum() for a, b in zip(mine, theirs)])
