"""Reinforcement learning against a reward: policy gradients for the token-level MDP, and DPO.

For an LLM the MDP is known: the state is the prompt and the tokens so far, an action is
the next token, the transition appends it, and the reward :math:`r(x, y)` arrives at the
end. The policy gradient of :math:`J(\\theta) = \\mathbb E_{y \\sim \\pi_\\theta(\\cdot \\mid x)}[r(x, y)]` is

.. math:: \\nabla J = \\mathbb E\\big[A(x, y) \\, \\nabla \\log \\pi_\\theta(y \\mid x)\\big],
          \\qquad \\log \\pi_\\theta(y \\mid x) = \\sum_t \\log \\pi_\\theta(y_t \\mid x, y_{<t}),

where the advantage :math:`A` is the reward minus any baseline that does not depend on
:math:`y`. REINFORCE, RLOO and GRPO differ only in that baseline (:func:`advantages`); one
loss (:func:`policy_loss`) and one loop (:func:`train`) serve all three, so a comparison
between them is a comparison of the advantage alone. Chapter 9 uses this module.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch

from irlm.preferences import bt_loss
from irlm.reward import _check_fit_args, _fit
from irlm.sampling import logprob_of, sample, token_logprobs
from irlm.sft import deterministic

ESTIMATORS = ("reinforce", "rloo", "grpo")


def advantages(rewards: np.ndarray | torch.Tensor, estimator: str, eps: float = 1e-6) -> torch.Tensor:
    """Advantages of a batch of ``rewards`` with shape (queries, k): k samples of each query.

    * ``"reinforce"``: :math:`A_{qi} = r_{qi} - \\bar r`, the mean of the whole batch as baseline.
    * ``"rloo"``: :math:`A_{qi} = r_{qi} - \\frac{1}{k-1}\\sum_{j \\ne i} r_{qj}`, the mean of the
      query's *other* samples (Ahmadian et al., 2024); it needs k >= 2.
    * ``"grpo"``: :math:`A_{qi} = (r_{qi} - \\bar r_q) / (\\sigma_q + \\epsilon)`, standardised within
      the query's group (Shao et al., 2024); it needs k >= 2.

    With RLOO and GRPO a group whose k rewards are all equal gets advantage 0: it carries no
    signal, however many tokens were sampled for it."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    r = torch.as_tensor(np.asarray(rewards, dtype=np.float64), dtype=torch.float64)
    if r.ndim != 2 or r.numel() == 0:
        raise ValueError(f"rewards must have shape (queries, k), got {tuple(r.shape)}")
    k = r.shape[1]
    if estimator == "reinforce":
        return (r - r.mean()).float()
    if k < 2:
        raise ValueError(f"estimator {estimator!r} needs k >= 2 samples per query, got k = {k}")
    if estimator == "rloo":
        return (r - (r.sum(1, keepdim=True) - r) / (k - 1)).float()
    centred = r - r.mean(1, keepdim=True)
    return (centred / (r.std(1, keepdim=True) + eps)).float()


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantage: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """The clipped policy-gradient loss with a KL penalty, summed over each response's tokens
    and averaged over responses; ``logp``, ``old_logp`` and ``ref_logp`` have shape
    (responses, tokens) with ``mask`` marking real tokens, ``advantage`` one value per response:

    .. math:: L = -\\frac1B \\sum_i \\sum_t \\Big[\\min\\big(\\rho_{it} A_i,\\;
              \\mathrm{clip}(\\rho_{it}, 1 - \\epsilon, 1 + \\epsilon) A_i\\big)
              - \\beta \\big(e^{\\delta_{it}} - \\delta_{it} - 1\\big)\\Big],

    with :math:`\\rho_{it} = \\pi_\\theta(y_{it}) / \\pi_{\\text{old}}(y_{it})`,
    :math:`\\delta_{it} = \\log \\pi_{\\text{ref}}(y_{it}) - \\log \\pi_\\theta(y_{it})` (the
    "k3" estimate of :math:`\\mathrm{KL}(\\pi_\\theta \\| \\pi_{\\text{ref}})`, GRPO's) and
    :math:`\\beta` = ``kl_coef``. On the batch's first update
    :math:`\\pi_\\theta = \\pi_{\\text{old}}`, :math:`\\rho = 1`, and the gradient is exactly
    :math:`-\\frac1B \\sum_i A_i \\nabla \\log \\pi_\\theta(y_i \\mid x_i)`;
    the clip only acts when a batch is reused. Tokens are summed, not averaged per response
    as in GRPO's paper, so that a long response is not down-weighted (Liu et al., 2025). On
    samples from :math:`\\pi_\\theta` the k3 term's expected gradient is
    :math:`\\nabla \\mathrm{KL}(\\pi_{\\text{ref}} \\| \\pi_\\theta)` token by token, the other direction
    of the KL and with no credit to later tokens; :func:`train`'s ``kl_in_reward`` gives the
    penalty of :math:`\\mathbb E_\\pi[r] - \\beta \\, \\mathrm{KL}(\\pi_\\theta \\| \\pi_{\\text{ref}})` instead."""
    if clip <= 0 or kl_coef < 0:
        raise ValueError(f"need clip > 0 and kl_coef >= 0, got {clip} and {kl_coef}")
    ratio = torch.exp(logp - old_logp)
    a = advantage[:, None]
    surrogate = torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
    delta = ref_logp - logp
    per_token = surrogate - kl_coef * (torch.exp(delta) - delta - 1)
    return -(per_token * mask).sum(1).mean()


def _padded(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-response token vectors into (responses, tokens), with a mask of real tokens."""
    width = max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, device=rows[0].device)
    mask = torch.zeros(len(rows), width, device=rows[0].device)
    for i, r in enumerate(rows):
        out[i, : len(r)], mask[i, : len(r)] = r, 1.0
    return out, mask


def train(
    policy,
    reference,
    tokenizer,
    prompts: Sequence[str],
    reward: Callable[[list[str], list[str]], np.ndarray],
    estimator: str = "grpo",
    steps: int = 30,
    queries_per_step: int = 8,
    group_size: int = 8,
    lr: float = 2e-4,
    kl_coef: float = 0.0,
    kl_in_reward: bool = False,
    clip: float = 0.2,
    updates_per_batch: int = 1,
    max_new_tokens: int = 48,
    seed: int = 0,
    threads: int = 2,
    callback: Callable[[int], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Train ``policy`` in place against ``reward(prompts, responses)`` (one number per response).

    Each step draws ``queries_per_step`` prompts, samples ``group_size`` responses of each at
    temperature 1, scores them, computes :func:`advantages` with ``estimator`` and takes
    ``updates_per_batch`` AdamW steps on :func:`policy_loss` against the policy that sampled.
    ``reference`` anchors the KL penalty of weight ``kl_coef``: GRPO's per-token term in the
    loss, or with ``kl_in_reward`` the sequence log-ratio subtracted from each reward,
    :math:`r - \\beta [\\log \\pi_\\theta(y \\mid x) - \\log \\pi_{\\text{ref}}(y \\mid x)]` (InstructGPT's
    and RLOO's placement). Returns one row per step: the mean reward and its standard
    deviation in the batch, the share of groups whose rewards are all equal (no signal;
    NaN for groups of one), the mean sequence log-ratio to the
    reference :math:`\\log \\pi_\\theta(y \\mid x) - \\log \\pi_{\\text{ref}}(y \\mid x)` (a KL estimate, nats),
    the sampled tokens' mean negative log-probability (an entropy estimate, nats per token)
    and the number of sampled tokens; plus whatever ``callback(step)`` returns after the step."""
    _check_train_args(prompts, estimator, kl_coef, steps, queries_per_step, group_size, updates_per_batch, lr)
    rng, log = random.Random(seed), []
    policy.eval()  # no dropout: the gradient is of the policy that sampled
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    with deterministic(threads):
        for step in range(steps):
            # 1. a group of samples per query, at temperature 1
            chosen = [prompts[rng.randrange(len(prompts))] for _ in range(queries_per_step)]
            batch = [p for p in chosen for _ in range(group_size)]
            out = sample(  # in one batch, as the loss takes them (on a CPU, bigger batches are faster)
                policy,
                tokenizer,
                batch,
                max_new_tokens=max_new_tokens,
                batch_size=len(batch),
                seed=seed * 100_003 + step,
            )
            # 2. their rewards, and their log-probabilities under the sampler and the reference
            r = np.asarray(reward(batch, out.texts), dtype=np.float64).reshape(queries_per_step, group_size)
            old, mask = (t.to(policy.device) for t in _padded([torch.as_tensor(lp) for lp in out.logprobs]))
            ref_rows = logprob_of(reference, tokenizer, batch, out.token_ids, batch_size=len(batch))
            ref = _padded([torch.as_tensor(lp) for lp in ref_rows])[0].to(policy.device)
            log_ratio = ((old - ref) * mask).sum(1)
            # 3. advantages (the KL penalty in the reward, or in the loss)
            shaped = r - kl_coef * log_ratio.cpu().numpy().reshape(r.shape) if kl_in_reward else r
            adv = advantages(shaped, estimator).reshape(-1).to(policy.device)
            # 4. policy-gradient steps on this batch
            in_loss = 0.0 if kl_in_reward else kl_coef
            for _ in range(updates_per_batch):
                logp = _padded(token_logprobs(policy, tokenizer, batch, out.token_ids))[0]
                loss = policy_loss(logp, old, ref, adv, mask, clip, in_loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            row = {
                "step": step,
                "reward": float(r.mean()),
                "reward_std": float(r.std(ddof=1)) if r.size > 1 else 0.0,
                "zero_variance_groups": float((r.std(1) == 0).mean()) if group_size > 1 else float("nan"),
                "kl": float(log_ratio.mean()),
                "entropy": float(-(old * mask).sum() / mask.sum()),
                "tokens": out.n_tokens,
            }
            log.append(row | (callback(step) if callback is not None else {}))
    return log


def _check_train_args(
    prompts: Sequence[str],
    estimator: str,
    kl_coef: float,
    steps: int,
    queries_per_step: int,
    group_size: int,
    updates_per_batch: int,
    lr: float,
) -> None:
    if len(prompts) == 0:
        raise ValueError("prompts is empty")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if steps < 1 or queries_per_step < 1 or group_size < 1 or updates_per_batch < 1 or lr <= 0:
        raise ValueError(
            "need steps, queries_per_step, group_size, updates_per_batch >= 1 and lr > 0; got "
            f"{steps}, {queries_per_step}, {group_size}, {updates_per_batch}, {lr}"
        )


def dpo_loss(
    chosen_logp: torch.Tensor,
    rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """Direct preference optimisation (Rafailov et al., 2023): the Bradley-Terry loss of the
    implicit reward :math:`\\hat r(x, y) = \\beta \\log \\frac{\\pi_\\theta(y \\mid x)}{\\pi_{\\text{ref}}(y \\mid x)}`,

    .. math:: L = -\\log \\sigma\\big(\\hat r(x, y^+) - \\hat r(x, y^-)\\big),

    whose minimiser over policies is the optimum of
    :math:`\\mathbb E_\\pi[r] - \\beta \\, \\mathrm{KL}(\\pi \\| \\pi_{\\text{ref}})`
    for the BT reward the preferences came from. Arguments are sequence log-probabilities."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return bt_loss(beta * (chosen_logp - ref_chosen_logp), beta * (rejected_logp - ref_rejected_logp))


def _sequence_logprobs(model, tokenizer, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
    return torch.stack([lp.sum() for lp in token_logprobs(model, tokenizer, prompts, responses)])


def train_dpo(
    policy,
    reference,
    tokenizer,
    prompts: Sequence[str],
    chosen: Sequence[str],
    rejected: Sequence[str],
    beta: float = 0.1,
    steps: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    seed: int = 0,
    threads: int = 2,
    callback: Callable[[int, torch.nn.Module, float], None] | None = None,
) -> None:
    """Train ``policy`` in place by :func:`dpo_loss` on pairs (``chosen[i]`` preferred to
    ``rejected[i]`` as a reply to ``prompts[i]``), AdamW on random mini-batches; the
    reference's log-probabilities are computed once. ``callback(step, policy, loss)`` runs
    after each step. Responses are strings, tokenized on their own as sampling produced them."""
    _check_fit_args(prompts, chosen, rejected, steps, batch_size, lr)
    ref_c = torch.tensor([lp.sum() for lp in logprob_of(reference, tokenizer, prompts, chosen)])
    ref_r = torch.tensor([lp.sum() for lp in logprob_of(reference, tokenizer, prompts, rejected)])

    def loss_of(idx: list[int]) -> torch.Tensor:
        p = [prompts[i] for i in idx]
        c = _sequence_logprobs(policy, tokenizer, p, [chosen[i] for i in idx])
        r = _sequence_logprobs(policy, tokenizer, p, [rejected[i] for i in idx])
        return dpo_loss(c, r, ref_c[idx].to(c.device).float(), ref_r[idx].to(c.device).float(), beta)

    _fit(policy, len(prompts), loss_of, steps, batch_size, lr, seed, threads, False, "DPO", callback)


def train_with_trl(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reward: Callable[[list[str], list[str]], np.ndarray],
    steps: int = 8,
    queries_per_step: int = 8,
    group_size: int = 8,
    lr: float = 2e-4,
    kl_coef: float = 0.0,
    max_new_tokens: int = 48,
    seed: int = 0,
    threads: int = 2,
) -> list[dict[str, float]]:
    """The same GRPO run as :func:`train` through TRL's ``GRPOTrainer``, the library one would
    use on a real model: ``steps`` steps, each of ``queries_per_step`` prompts x ``group_size``
    samples at temperature 1, group-standardised advantages (``scale_rewards="group"``), one
    update per batch, tokens summed with a constant normaliser (``loss_type="dr_grpo"``: ours
    divided by ``max_new_tokens``, a factor Adam's normalisation nearly cancels), KL weight
    ``kl_coef`` (``beta``), constant learning rate, no weight decay, no gradient clipping, and
    float32 (TRL's defaults are bf16 and gradient checkpointing).
    Trains ``policy`` in place and returns TRL's per-step log under :func:`train`'s names (``reward``,
    ``zero_variance_groups``, ``entropy``, ``tokens``; ``kl`` only when ``kl_coef > 0``)."""
    import tempfile
    import warnings

    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers.utils import logging
    from trl import GRPOConfig, GRPOTrainer

    def reward_func(prompts: list[str], completions: list[str], **_) -> list[float]:
        return [float(r) for r in reward(prompts, completions)]

    verbosity = logging.get_verbosity()
    with tempfile.TemporaryDirectory() as out, deterministic(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRL's and transformers' notes on a tiny local model
        logging.set_verbosity_error()
        args = GRPOConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=queries_per_step * group_size,
            num_generations=group_size, max_completion_length=max_new_tokens, temperature=1.0, top_k=0,
            learning_rate=lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, beta=kl_coef,
            loss_type="dr_grpo", scale_rewards="group", bf16=False, gradient_checkpointing=False,
            use_cpu=policy.device.type == "cpu", seed=seed,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        )  # fmt: skip
        trainer = GRPOTrainer(
            model=policy, reward_funcs=reward_func, args=args, processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"prompt": list(prompts)}),
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        try:
            trainer.train()
        finally:
            logging.set_verbosity(verbosity)
    names = {"reward": "reward", "frac_reward_zero_std": "zero_variance_groups", "entropy": "entropy", "kl": "kl"}
    rows = [h for h in trainer.state.log_history if "reward" in h]
    batch = queries_per_step * group_size
    return [
        {"step": i}
        | {ours: float(h[theirs]) for theirs, ours in names.items() if theirs in h}
        | {"tokens": round(h["completions/mean_length"] * batch)}
        for i, h in enumerate(rows)
    ]
