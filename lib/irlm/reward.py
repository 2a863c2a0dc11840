"""Rejection sampling with reward models (chapter 4).

Best-of-N draws :math:`N` samples from the policy and keeps the one a scorer ranks
highest. With a perfect scorer (the gold verifier) its accuracy is pass@N; with no scorer
but agreement among samples it is majority voting (self-consistency); with a learned
outcome reward model (ORM) it is as good as the ORM's ranking.

Best-of-N moves the policy a known distance: the chosen sample's distribution
:math:`\\pi_N` satisfies :math:`\\mathrm{KL}(\\pi_N \\| \\pi) = \\log N - \\frac{N-1}{N}`
(Stiennon et al., 2020; Gao et al., 2022), which lets us plot the gold reward a proxy
reward model earns against how far it pushed the policy.
"""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from irlm.sampling import right_pad, token_ids_of
from irlm.sft import deterministic


class Choice(NamedTuple):
    """Best-of-N's pick for each query: the sample's index and the sample itself."""

    index: np.ndarray
    samples: list


def best_of_n(samples: Sequence[Sequence], scores: np.ndarray, n: int) -> Choice:
    """Among the first ``n`` samples of each query, the one with the highest score.

    ``scores`` has shape ``(queries, >= n)``; ties go to the earliest sample, so the
    choice is deterministic. Works with any scorer: a verifier, a reward model, a
    log-probability.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or len(scores) != len(samples):
        raise ValueError(f"scores must have shape (queries, samples) with {len(samples)} queries, got {scores.shape}")
    if not 1 <= n <= scores.shape[1]:
        raise ValueError(f"n must lie in [1, {scores.shape[1]}], got {n}")
    if np.isnan(scores[:, :n]).any():
        raise ValueError("scores contain NaN")
    index = np.argmax(scores[:, :n], axis=1)  # argmax returns the first maximum
    return Choice(index, [row[i] for row, i in zip(samples, index)])


def best_of_n_expected(scores: np.ndarray, correct: np.ndarray, n: int) -> np.ndarray:
    """Per query, the expected correctness of best-of-``n`` over *all* size-``n`` subsets
    of its ``M`` samples, not the first ``n`` of one ordering.

    Group a query's samples by score. The best of a random ``n``-subset falls in group
    :math:`g` (size :math:`m_g`, with :math:`L_g` samples scoring strictly lower) with
    probability :math:`\\big[\\binom{L_g + m_g}{n} - \\binom{L_g}{n}\\big] / \\binom{M}{n}`,
    and ties within the group are broken uniformly, so

    .. math:: \\mathbb{E}[\\text{correct}] = \\sum_g \\frac{\\binom{L_g + m_g}{n} -
              \\binom{L_g}{n}}{\\binom{M}{n}} \\, \\bar c_g .

    At ``n = 1`` it is the mean over all samples; at ``n = M`` it is the top sample. The
    same unbiased averaging as pass@k (Chen et al., 2021), for any scorer.
    """
    scores, correct = np.asarray(scores, dtype=float), np.asarray(correct, dtype=float)
    if scores.ndim != 2 or scores.shape != correct.shape:
        raise ValueError(
            f"scores and correct must be (queries, samples) arrays of one shape, got {scores.shape} and {correct.shape}"
        )
    if not 1 <= n <= scores.shape[1]:
        raise ValueError(f"n must lie in [1, {scores.shape[1]}], got {n}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")

    def comb(k: np.ndarray) -> np.ndarray:
        return np.array([math.comb(int(x), n) for x in k], dtype=float)

    total = math.comb(scores.shape[1], n)
    out = np.empty(len(scores))
    for i, (s, c) in enumerate(zip(scores, correct)):
        values, group = np.unique(s, return_inverse=True)
        size = np.bincount(group, minlength=len(values))
        mean_c = np.bincount(group, weights=c, minlength=len(values)) / size
        lower = np.concatenate([[0], np.cumsum(size)[:-1]])
        p = (comb(lower + size) - comb(lower)) / total
        out[i] = float(p @ mean_c)
    return out


def majority_vote_expected(
    answers: Sequence[Sequence[Hashable]], correct: np.ndarray, n: int, draws: int = 200, seed: int = 0
) -> np.ndarray:
    """Per query, the correctness of :func:`majority_vote` averaged over ``draws`` random
    size-``n`` subsets of its samples (a Monte Carlo estimate of the subset average, so a
    curve over ``n`` does not depend on the order the samples came in). Exact at ``n = 1``
    (the mean over samples) and at ``n = M`` (all samples)."""
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or len(correct) != len(answers):
        raise ValueError(f"correct must be (queries, samples) with {len(answers)} queries, got {correct.shape}")
    m = correct.shape[1]
    if not 1 <= n <= m:
        raise ValueError(f"n must lie in [1, {m}], got {n}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if n == 1:
        return correct.mean(axis=1)
    rng = np.random.default_rng(seed)
    subsets = [np.arange(m)] if n == m else [rng.permutation(m)[:n] for _ in range(draws)]
    out = np.zeros(len(answers))
    for idx in subsets:
        picked = majority_vote([[row[j] for j in idx] for row in answers], n)
        out += correct[np.arange(len(answers)), idx[picked]]
    return out / len(subsets)


def majority_vote(answers: Sequence[Sequence[Hashable]], n: int) -> np.ndarray:
    """Self-consistency (Wang et al., 2022): per query, the index of the first of the first
    ``n`` samples whose answer is the most frequent one; unparsable answers (``None``)
    only win when nothing else was parsed."""
    if len(answers) == 0:
        raise ValueError("answers is empty")
    out = []
    for row in answers:
        if not 1 <= n <= len(row):
            raise ValueError(f"n must lie in [1, {len(row)}], got {n}")
        counts = Counter(a for a in row[:n] if a is not None)
        if not counts:
            out.append(0)
            continue
        top = max(counts.values())
        out.append(next(i for i, a in enumerate(row[:n]) if a is not None and counts[a] == top))
    return np.array(out)


def flip_labels(labels: Sequence[bool], rate: float, seed: int = 0) -> np.ndarray:
    """Noisy annotators: each binary label is flipped independently with probability ``rate``."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    y = np.asarray(labels, dtype=bool)
    return y ^ (np.random.default_rng(seed).random(y.shape) < rate)


def rejection_sampling_set(prompts: Sequence[str], responses: Sequence[str], keep: Sequence[bool]):
    """A fine-tuning set (a ``datasets.Dataset`` of ``prompt``, ``response``) of the kept
    best-of-N choices: rejection sampling turns a scorer into demonstrations for SFT."""
    from datasets import Dataset

    if not len(prompts) == len(responses) == len(keep):
        raise ValueError(
            f"prompts, responses and keep must have equal length, got {len(prompts)}, {len(responses)}, {len(keep)}"
        )
    rows = [{"prompt": p, "response": r} for p, r, k in zip(prompts, responses, keep) if k]
    return Dataset.from_list(rows) if rows else Dataset.from_dict({"prompt": [], "response": []})


def best_of_n_kl(n: int | np.ndarray) -> float | np.ndarray:
    """:math:`\\mathrm{KL}(\\pi_{\\text{best-of-}N} \\| \\pi) = \\log N - (N - 1)/N` for a
    continuous reward without ties."""
    n_arr = np.asarray(n, dtype=float)
    if (n_arr < 1).any():
        raise ValueError(f"n must be >= 1, got {n}")
    kl = np.log(n_arr) - (n_arr - 1) / n_arr
    return float(kl) if kl.ndim == 0 else kl


def fit_gao_best_of_n(kl: np.ndarray, gain: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of Gao et al.'s best-of-N form :math:`R(d) = d(\\alpha - \\beta d)`,
    :math:`d = \\sqrt{\\mathrm{KL}}`, to gold-reward gains over the initial policy; returns
    ``(alpha, beta)``. :math:`\\beta > 0` means the gold reward peaks and then falls:
    over-optimisation of the proxy."""
    d = np.sqrt(np.asarray(kl, dtype=float))
    gain = np.asarray(gain, dtype=float)
    if d.shape != gain.shape or len(d) < 2:
        raise ValueError("kl and gain must be equal-length arrays with at least two points")
    design = np.stack([d, -(d**2)], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(design, gain, rcond=None)
    return float(alpha), float(beta)


CONFIDENCE_FEATURES = (
    "log-likelihood",
    "mean token log-prob",
    "lowest token log-prob",
    "two lowest token log-probs",
    "tokens below p=1/2",
    "tokens below p=1/5",
)


def confidence_features(logprobs: Sequence[np.ndarray]) -> np.ndarray:
    """What the policy itself says about each response, from its per-token log-probabilities
    :math:`\\ell_t = \\log \\pi(y_t \\mid x, y_{<t})`: the sum :math:`\\sum_t \\ell_t`, the mean,
    the lowest :math:`\\min_t \\ell_t`, the sum of the two lowest, and how many tokens had
    :math:`\\pi < 1/2` and :math:`\\pi < 1/5`; shape ``(responses, 6)``, columns named in
    :data:`CONFIDENCE_FEATURES`. A wrong digit drawn at temperature 1 is often a token the
    policy found unlikely, and these features see it however long the response is."""
    if len(logprobs) == 0:
        raise ValueError("logprobs is empty")
    rows = []
    for lp in logprobs:
        lp = np.asarray(lp, dtype=float)
        if lp.ndim != 1 or len(lp) == 0:
            raise ValueError("every response needs a 1-D array of at least one token log-prob")
        low = np.sort(lp)[:2]
        rows.append([lp.sum(), lp.mean(), low[0], low.sum(), (lp < np.log(0.5)).sum(), (lp < np.log(0.2)).sum()])
    return np.array(rows)


def train_confidence_rm(features: np.ndarray, labels: Sequence[bool], l2: float = 1.0):
    """A reward model on :func:`confidence_features`: standardised features and logistic
    regression, :math:`r(x, y) = w^\\top \\tilde f(x, y) + b`, fitted by maximum likelihood
    with an L2 penalty :math:`\\lVert w \\rVert^2 / (2 \\cdot \\text{l2})` on binary outcome
    labels. Returns a scikit-learn pipeline; its ``decision_function`` is the reward."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(features, dtype=float), np.asarray(labels, dtype=bool)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (responses, features) with one label each, got {x.shape} and {y.shape}")
    if y.all() or not y.any():
        raise ValueError("labels need both right and wrong responses")
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    return make_pipeline(StandardScaler(), LogisticRegression(C=l2, max_iter=5000)).fit(x, y)


class OutcomeRewardModel(torch.nn.Module):
    """A causal LM's final hidden state at the last token of (prompt, response), and a
    linear head: :math:`r_\\phi(x, y) = w^\\top h_\\phi(x, y)_{\\text{last}} + b`, a logit for
    "this response is correct"."""

    def __init__(self, lm) -> None:
        super().__init__()
        self.lm = lm
        self.head = torch.nn.Linear(lm.config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        last = attention_mask.sum(dim=1) - 1  # right padding: the last real token
        hidden = out.hidden_states[-1][torch.arange(len(last)), last]
        return self.head(hidden.float()).squeeze(-1)


def _encode(tokenizer, prompts: Sequence[str], responses: Sequence[str], device) -> tuple[torch.Tensor, ...]:
    # prompt and response tokenized apart (as the sampler saw them)
    ids_of = token_ids_of(tokenizer, [*prompts, *responses])
    ids, mask = right_pad([ids_of[p] + ids_of[r] for p, r in zip(prompts, responses)], tokenizer.pad_token_id)
    return ids.to(device), mask.to(device)


def _fit(
    model: torch.nn.Module,
    n_items: int,
    loss_of: Callable[[list[int]], torch.Tensor],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    threads: int,
    progress: bool,
    desc: str,
    callback: Callable[[int, torch.nn.Module, float], None] | None = None,
) -> None:
    """AdamW on random mini-batches of item indices; ``loss_of(batch)`` gives the loss.
    ``callback(step, model, loss)``, if given, runs after each optimiser step with that
    step's mini-batch loss (e.g. to record a held-out loss with :func:`mean_loss`)."""
    rng = random.Random(seed)
    with deterministic(threads):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        for step in tqdm(range(steps), desc=desc, disable=not progress):
            loss = loss_of(rng.sample(range(n_items), min(batch_size, n_items)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if callback is not None:
                callback(step, model, loss.item())
    model.eval()


def _check_fit_args(
    prompts: Sequence[str], responses: Sequence[str], targets: Sequence, steps: int, batch_size: int, lr: float
) -> None:
    if not (len(prompts) == len(responses) == len(targets)) or len(prompts) == 0:
        raise ValueError("prompts, responses and labels (checks) must be non-empty and of equal length")
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}")


def train_orm(
    lm,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    labels: Sequence[bool],
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 2,
    progress: bool = True,
    callback: Callable[[int, torch.nn.Module, float], None] | None = None,
) -> OutcomeRewardModel:
    """Fine-tune a copy of ``lm`` plus a linear head with the logistic loss
    :math:`-[z \\log \\sigma(r) + (1 - z) \\log (1 - \\sigma(r))]` on binary outcome labels
    :math:`z` (was the response correct?). ``callback(step, model, loss)``, if given, runs
    after each optimiser step."""
    _check_fit_args(prompts, responses, labels, steps, batch_size, lr)
    torch.manual_seed(seed)
    orm = OutcomeRewardModel(copy.deepcopy(lm)).to(lm.device)

    def loss_of(idx: list[int]) -> torch.Tensor:
        return _batch_loss(orm, tokenizer, *([items[i] for i in idx] for items in (prompts, responses, labels)))

    _fit(orm, len(prompts), loss_of, steps, batch_size, lr, seed, threads, progress, "training the ORM", callback)
    return orm


def train_bradley_terry(
    lm,
    tokenizer,
    prompts: Sequence[str],
    chosen: Sequence[str],
    rejected: Sequence[str],
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 2,
    progress: bool = True,
) -> OutcomeRewardModel:
    """The same architecture trained on preference pairs instead of outcome labels, by the
    Bradley-Terry loss :math:`-\\log \\sigma(r(x, y^+) - r(x, y^-))` (chapter 5's loss on
    chapter 4's model): ``chosen[i]`` is preferred to ``rejected[i]`` as a reply to ``prompts[i]``."""
    from irlm.preferences import bt_loss

    _check_fit_args(prompts, chosen, rejected, steps, batch_size, lr)
    torch.manual_seed(seed)
    rm = OutcomeRewardModel(copy.deepcopy(lm)).to(lm.device)

    def loss_of(idx: list[int]) -> torch.Tensor:
        p = [prompts[i] for i in idx]
        r_chosen = rm(*_encode(tokenizer, p, [chosen[i] for i in idx], lm.device))
        r_rejected = rm(*_encode(tokenizer, p, [rejected[i] for i in idx], lm.device))
        return bt_loss(r_chosen, r_rejected)

    _fit(rm, len(prompts), loss_of, steps, batch_size, lr, seed, threads, progress, "training the BT reward model")
    return rm


class StepVerifier(OutcomeRewardModel):
    """The ORM's architecture asked a question at several places of a response: the
    hidden state where each checked piece of text ends, through the same linear head,
    gives a logit :math:`v_j` for "check :math:`j` passes". A response's score is the
    log-probability that every check passes,
    :math:`r(x, y) = \\sum_j \\log \\sigma(v_j)`, the outcome score as a product of step
    scores (Lightman et al., 2023)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``positions.shape``: ``(batch, checks)``, token indices (any
        value where a row has fewer checks; mask those out)."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1].gather(1, positions[..., None].expand(-1, -1, out.hidden_states[-1].shape[-1]))
        return self.head(hidden.float()).squeeze(-1)


def _check_positions(
    tokenizer, prompts: Sequence[str], responses: Sequence[str], checks: Sequence[Sequence[tuple[int, bool]]], device
) -> tuple[torch.Tensor, ...]:
    """Token index of the last character of each check, its label and a mask, padded."""
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    spans = tokenizer(list(responses), add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    positions, labels = [], []
    for p, span, row in zip(prompt_ids, spans, checks):
        offset, ends = len(p), [e for _, e in span]
        positions.append([offset + next(t for t, e in enumerate(ends) if e >= end) for end, _ in row])
        labels.append([float(ok) for _, ok in row])
    width = max(1, max(len(row) for row in positions))
    pos = torch.zeros(len(positions), width, dtype=torch.long)
    lab, mask = torch.zeros(len(positions), width), torch.zeros(len(positions), width, dtype=torch.bool)
    for i, (ps, ls) in enumerate(zip(positions, labels)):
        pos[i, : len(ps)], lab[i, : len(ls)], mask[i, : len(ps)] = torch.tensor(ps), torch.tensor(ls), True
    return pos.to(device), lab.to(device), mask.to(device)


def _batch_loss(
    model: OutcomeRewardModel, tokenizer, prompts: Sequence[str], responses: Sequence[str], targets: Sequence
) -> torch.Tensor:
    """The mean logistic loss of an ORM on its outcome labels, or of a StepVerifier on every check."""
    device = next(model.parameters()).device
    ids, mask = _encode(tokenizer, prompts, responses, device)
    if isinstance(model, StepVerifier):
        pos, lab, keep = _check_positions(tokenizer, prompts, responses, targets, device)
        return torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask, pos)[keep], lab[keep])
    y = torch.tensor([float(z) for z in targets], device=device)
    return torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), y)


@torch.no_grad()
def mean_loss(
    model: OutcomeRewardModel,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    targets: Sequence,
    batch_size: int = 256,
) -> float:
    """The training objective on a set of items (e.g. held out): the mean over its labels
    :math:`z` of the logistic loss :math:`-[z \\log \\sigma(v) + (1 - z) \\log(1 - \\sigma(v))]`,
    one label per response for an ORM (``targets``: booleans), one per check for a
    :class:`StepVerifier` (``targets``: the ``checks`` of :func:`train_step_verifier`).
    Computed in eval mode; the model's mode is restored."""
    _check_fit_args(prompts, responses, targets, 1, batch_size, 1.0)
    stepwise = isinstance(model, StepVerifier)
    training, total, count = model.training, 0.0, 0
    model.eval()
    for s in range(0, len(prompts), batch_size):
        p, r, t = prompts[s : s + batch_size], responses[s : s + batch_size], targets[s : s + batch_size]
        n = sum(len(row) for row in t) if stepwise else len(t)
        if n:
            total, count = total + n * _batch_loss(model, tokenizer, p, r, t).item(), count + n
    model.train(training)
    if count == 0:
        raise ValueError("targets holds no check at all")
    return total / count


def train_step_verifier(
    lm,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    checks: Sequence[Sequence[tuple[int, bool]]],
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 2,
    progress: bool = True,
    callback: Callable[[int, torch.nn.Module, float], None] | None = None,
) -> StepVerifier:
    """Fine-tune a copy of ``lm`` plus a linear head with the logistic loss on every check
    of every response: ``checks[i]`` lists ``(end, ok)`` for response ``i``, ``end`` the
    character index one past the checked text (e.g. :func:`irlm.tasks.arithmetic_checks`).
    The loss is the mean over all checks in a batch of
    :math:`-[z_j \\log \\sigma(v_j) + (1 - z_j) \\log(1 - \\sigma(v_j))]`.
    ``callback(step, model, loss)``, if given, runs after each optimiser step."""
    _check_fit_args(prompts, responses, checks, steps, batch_size, lr)
    if not any(len(row) for row in checks):
        raise ValueError("checks holds no check at all")
    torch.manual_seed(seed)
    verifier = StepVerifier(copy.deepcopy(lm)).to(lm.device)

    def loss_of(idx: list[int]) -> torch.Tensor:
        return _batch_loss(verifier, tokenizer, *([items[i] for i in idx] for items in (prompts, responses, checks)))

    desc = "training the verifier"
    _fit(verifier, len(prompts), loss_of, steps, batch_size, lr, seed, threads, progress, desc, callback)
    return verifier


@torch.inference_mode()
def score(
    orm: OutcomeRewardModel,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 256,
    checks: Sequence[Sequence[tuple[int, bool]]] | None = None,
) -> np.ndarray:
    """The reward of each (prompt, response): the ORM's logit, or for a
    :class:`StepVerifier` the sum of :math:`\\log \\sigma(v_j)` over the response's checks
    (``checks``: where they end; their labels are not used). Repeated items, frequent among
    a policy's samples, are scored once, so every copy gets the very same score."""
    if len(prompts) != len(responses) or len(prompts) == 0:
        raise ValueError("prompts and responses must be non-empty and of equal length")
    stepwise = isinstance(orm, StepVerifier)
    if stepwise != (checks is not None) or (stepwise and len(checks) != len(prompts)):
        raise ValueError("checks must be given (one row per response) exactly when orm is a StepVerifier")
    device = next(orm.parameters()).device
    # identical items (prompt, response and check ends), frequent among samples, are scored once
    ends = [tuple(end for end, _ in row) for row in checks] if stepwise else [()] * len(prompts)
    keys = list(zip(prompts, responses, ends))
    first: dict = {}  # item -> its place among the distinct items
    items: list[int] = []  # where each distinct item first occurs
    for i, key in enumerate(keys):
        if key not in first:
            first[key] = len(items)
            items.append(i)
    index = np.array([first[key] for key in keys])
    out = []
    for s in range(0, len(items), batch_size):
        rows = items[s : s + batch_size]
        p, r = [prompts[i] for i in rows], [responses[i] for i in rows]
        ids, mask = _encode(tokenizer, p, r, device)
        if not stepwise:
            out.append(orm(ids, mask).cpu().numpy())
            continue
        pos, _, keep = _check_positions(tokenizer, p, r, [checks[i] for i in rows], device)
        logsig = torch.nn.functional.logsigmoid(orm(ids, mask, pos))
        out.append(torch.where(keep, logsig, 0.0).sum(dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)[index]
