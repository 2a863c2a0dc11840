"""Supervised fine-tuning as behaviour cloning (chapter 3; also the zoo's pre-training).

Given demonstrations :math:`(x, y^\\star)` from an expert policy :math:`\\pi^\\star`, SFT
minimises the negative log-likelihood of the expert's response tokens,

.. math::
    \\mathcal L(\\theta) = -\\frac{1}{|R|} \\sum_{t \\in R} \\log \\pi_\\theta(y^\\star_t \\mid x, y^\\star_{<t}),

where :math:`R` are the response positions (the prompt is given, not imitated). In
expectation this is the forward KL :math:`\\mathrm{KL}(\\pi^\\star \\| \\pi_\\theta)` up to the
expert's entropy, a constant: mass-covering, so the model is pushed to put probability
wherever the expert does, and nothing pulls it towards the expert's *reward*.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from irlm import tinygpt
from irlm.sampling import right_pad, token_ids_of


@contextlib.contextmanager
def deterministic(threads: int):
    """Fixed thread count and deterministic kernels inside the block (new tensors not filled
    with NaN first, as :func:`irlm.seed_everything` sets); restored after."""
    before_threads, before_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    before_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det)
        torch.utils.deterministic.fill_uninitialized_memory = before_fill


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """``(prompt ids, response ids + eos)`` per pair, tokenized apart as sampling sees
    them: the prompt is encoded, then the response is generated."""
    if len(pairs) == 0:
        raise ValueError("pairs is empty; pass at least one (prompt, response) demonstration")
    ids = token_ids_of(tokenizer, (t for pair in pairs for t in pair))
    prompts, responses = [ids[p] for p, _ in pairs], [ids[r] for _, r in pairs]
    return [(p, r + [tokenizer.eos_token_id]) for p, r in zip(prompts, responses)]


def pad_batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded ``(input_ids, attention_mask, labels)``. Labels are -100 (ignored by the
    loss) on prompt tokens and padding: the model learns to *respond*, not to guess queries."""
    ids, mask = right_pad([p + r for p, r in rows], pad_id)
    width = ids.shape[1]
    labels = torch.tensor([[-100] * len(p) + r + [-100] * (width - len(p) - len(r)) for p, r in rows])
    return ids, mask, labels


def response_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The SFT loss written out: mean of :math:`-\\log \\pi_\\theta(y_t \\mid \\cdot)` over the
    positions whose label is not -100. Position ``t``'s logits predict token ``t + 1``."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    keep = target != -100
    token_logp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(token_logp * keep).sum() / keep.sum()


def batch_nll(model, batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """The response-masked NLL of one batch of encoded demonstrations: packed into rows with
    no padding for the zoo's GPT-2 models (:mod:`irlm.tinygpt`, the same loss, faster), else
    right-padded through the model's own forward (any causal LM, LoRA-wrapped or not)."""
    if tinygpt.supports(model):
        width = max(len(p) + len(r) for p, r in batch)
        return tinygpt.packed_nll(model, *(t.to(model.device) for t in tinygpt.pack(batch, width, pad_id)))
    ids, mask, labels = (t.to(model.device) for t in pad_batch(batch, pad_id))
    # our own loss, not ``labels=``: the model's built-in one is the same (a test checks it)
    # but warns when a loaded model's config does not name its loss type
    return response_nll(model(input_ids=ids, attention_mask=mask).logits, labels)


def behaviour_clone(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 10,
    weight_decay: float = 0.0,
    seed: int = 0,
    threads: int = 2,
    progress: bool = True,
    desc: str = "fine-tuning",
    callback: Callable[[int], None] | None = None,
) -> list[float]:
    """Fit ``model`` to the demonstrations ``pairs`` by the response-masked NLL; returns the
    loss per step. AdamW, linear warm-up then cosine decay to 10% of ``lr``; the pairs are
    reshuffled every epoch with ``seed``. Trains in place and leaves the model in eval mode.
    ``callback(step)``, if given, runs after each optimiser step (e.g. to record a held-out
    loss; the model is in train mode there, so evaluate under ``torch.no_grad()``).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    rows = encode_pairs(tokenizer, pairs)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max(len(p) + len(r) for p, r in rows) > limit:
        raise ValueError(f"a demonstration is longer than the model's {limit} positions")
    rng, order = random.Random(seed), []
    while len(order) < steps * batch_size:
        epoch = list(range(len(rows)))
        rng.shuffle(epoch)
        order += epoch
    params = [p for p in model.parameters() if p.requires_grad]
    losses: list[float] = []
    with deterministic(threads):
        model.train()
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / steps)))
        )
        bar = tqdm(range(steps), desc=desc, disable=not progress)
        for step in bar:
            batch = [rows[i] for i in order[step * batch_size : (step + 1) * batch_size]]
            loss = batch_nll(model, batch, tokenizer.pad_token_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if callback is not None:
                callback(step)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return losses


def with_lora(model, rank: int = 8, alpha: int = 16):
    """Wrap ``model`` with LoRA adapters (``peft``) on its attention projections: each
    adapted weight becomes :math:`W + \\frac{\\alpha}{r} BA` with :math:`B \\in \\mathbb R^{d
    \\times r}`, :math:`A \\in \\mathbb R^{r \\times k}` trained and :math:`W` frozen
    (Hu et al., 2021). Call ``.merge_and_unload()`` on the result to get a plain model back."""
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    gpt2 = model.config.model_type == "gpt2"  # GPT-2 stores its projections transposed (Conv1D)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM", fan_in_fan_out=gpt2)
    with warnings.catch_warnings():
        # peft reads transformers' deprecated alias ``is_gradient_checkpointing``; no argument
        # of ours avoids it, and it says nothing about this model
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def trainable_parameters(model) -> int:
    """Number of parameters the optimiser would update."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
