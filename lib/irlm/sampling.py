"""The LLM as a sampler: batched generation with a KV cache, and scoring of given text.

A causal LM defines :math:`\\pi(y \\mid x) = \\prod_t \\pi(y_t \\mid x, y_{<t})`. Sampling
draws :math:`y_t` one token at a time from the next-token distribution, reshaped by

* temperature :math:`T`: :math:`p_i \\propto \\exp(z_i / T)` (``T = 0`` means greedy argmax),
* top-k: keep the ``k`` most likely tokens,
* top-p (nucleus): keep the smallest set of tokens whose probability reaches ``p``,

and stops at the end-of-sequence token. The key/value cache makes each new token cost
one forward step over a single position instead of re-encoding the prefix. The
log-probabilities returned are the model's own, :math:`\\log \\pi(y_t \\mid x, y_{<t})`
at temperature 1 with no truncation: the quantity reward models and KL terms need.
Chapter 1 uses this module; every later chapter samples through it.
"""

from __future__ import annotations

import inspect
import weakref
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from irlm import tinygpt


@dataclass
class Samples:
    """Generated continuations, in the order of the prompts."""

    texts: list[str]
    token_ids: list[list[int]]
    logprobs: list[np.ndarray]  # per generated token, under the untempered model

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)


def _check_args(
    prompts: Sequence[str], temperature: float, top_k: int, top_p: float, max_new_tokens: int, batch_size: int
) -> None:
    if len(prompts) == 0:
        raise ValueError("prompts is empty; pass at least one prompt string")
    if not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("every prompt must be a non-empty string")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no top-k filter), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to ``-inf``."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one token per row of ``logits`` (shape ``[batch, vocab]``).

    By the inverse of the cumulative distribution: draw u uniform in [0, total) and take the
    first token whose cumulative probability exceeds u, so token i comes with probability p_i.
    One random number a row, where ``torch.multinomial`` draws one per token of the vocabulary.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(len(probs), 1, generator=generator, device=probs.device) * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    if bool((tok == probs.shape[-1]).any()):  # u rounded up to the total: take the last token that can be drawn
        tok = torch.minimum(tok, probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(-1))
    return tok


def _stop_ids(tokenizer, stop_token_ids: Sequence[int] | None) -> torch.Tensor:
    ids = set(stop_token_ids or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the tokenizer has no eos token; pass stop_token_ids")
    return torch.tensor(sorted(ids))


_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (its state, {text: ids})
MEMO_SIZE = 1 << 17  # texts remembered per tokenizer (ids stored as 4-byte ints); then it starts afresh


def _tokenizer_state(tokenizer) -> tuple:
    """What changes a Hugging Face tokenizer's ids without changing it as an object: its
    vocabulary and added tokens (``add_tokens``) and whether special tokens are split."""
    return (
        len(tokenizer),
        len(getattr(tokenizer, "added_tokens_decoder", ())),
        getattr(tokenizer, "split_special_tokens", None),
    )


def token_ids_of(tokenizer, texts: Iterable[str]) -> dict[str, list[int]]:
    """Each distinct text's token ids (no special tokens), the new ones tokenized in one call.

    Texts this tokenizer has seen before come from a memo, kept per tokenizer while it
    lives. Samplers see the same texts again and again: chapter 10's rollouts re-read the
    same Countdown states across policies and rounds, and two of every three texts they
    tokenized had been tokenized before. The memo starts afresh when the tokenizer's
    vocabulary, added tokens or ``split_special_tokens`` change, or when it would pass
    :data:`MEMO_SIZE` texts; a new normalizer or pre-tokenizer on the same object goes
    unseen (make a new tokenizer instead)."""
    distinct = list(dict.fromkeys(texts))
    state, memo = _MEMO.get(tokenizer, (None, {}))
    if state != _tokenizer_state(tokenizer):
        state, memo = _tokenizer_state(tokenizer), {}
        _MEMO[tokenizer] = state, memo
    new = [t for t in distinct if t not in memo]
    if len(memo) + len(new) > MEMO_SIZE:
        memo.clear()
        new = distinct
    if new:
        memo.update(zip(new, (array("i", ids) for ids in tokenizer(new, add_special_tokens=False)["input_ids"])))
    return {t: memo[t].tolist() for t in distinct}


def _encode_left_padded(tokenizer, prompts: Sequence[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    ids_of = token_ids_of(tokenizer, prompts)
    ids = [ids_of[p] for p in prompts]
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids], device=device)
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=device)
    return input_ids, mask


def right_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)`` for rows of token ids."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def _cache_arg(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` in recent transformers,
    ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _hf_logits(model, input_ids: torch.Tensor, mask: torch.Tensor):
    """Next-token logits (B, V) through the model's own forward and KV cache: any causal LM.
    A generator: ``send`` it the tokens just drawn to get the logits that follow them."""
    # left padding: each row's first real token gets position 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache_arg = _cache_arg(model)
    while True:
        tok = yield out.logits[:, -1, :]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        positions = positions[:, -1:] + 1
        out = model(
            input_ids=tok[:, None],
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{cache_arg: _cache_of(out)},
        )


def _tinygpt_logits(model, input_ids: torch.Tensor, mask: torch.Tensor):
    """The same as :func:`_hf_logits` for the zoo's GPT-2 models, through :mod:`irlm.tinygpt`
    and its key/value cache written in place. A prompt that appears in several rows (``n``
    samples of one query) is encoded once and its cache copied to each of its rows."""
    B, P = input_ids.shape
    rows, inverse = torch.unique(torch.cat([input_ids, mask], -1), dim=0, return_inverse=True)
    cache = tinygpt.KVCache(model, len(rows))
    # the prompt: causal over its real tokens; a padding position sees itself, so no row of the mask is empty
    eye = torch.eye(P, dtype=torch.bool, device=mask.device)
    see = torch.ones(P, P, dtype=torch.bool, device=mask.device).tril() & (rows[:, None, None, P:].bool() | eye)
    hidden = tinygpt.hidden_states(model, rows[:, :P], (rows[:, P:].cumsum(-1) - 1).clamp(min=0), see, cache, at=0)
    hidden, cache = hidden[inverse], cache.select(inverse)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    real = mask.bool()[:, None, None, :]  # (B, 1, 1, keys): the keys a new token attends to
    while True:
        tok = yield tinygpt.logits(model, hidden[:, -1])
        real = torch.cat([real, real.new_ones(B, 1, 1, 1)], dim=-1)
        positions = positions[:, -1:] + 1
        hidden = tinygpt.hidden_states(model, tok[:, None], positions, real, cache, at=real.shape[-1] - 1)


@torch.inference_mode()
def _sample_batch(model, tokenizer, prompts, temperature, top_k, top_p, max_new_tokens, stop, generator):
    input_ids, mask = _encode_left_padded(tokenizer, prompts, model.device)
    if tinygpt.supports(model):
        steps = _tinygpt_logits(model, input_ids, mask)
    else:
        steps = _hf_logits(model, input_ids, mask)
    stop = stop.to(model.device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=model.device)
    tokens, logps = [], []
    logits = next(steps).float()
    for i in range(max_new_tokens):
        tok = next_token(logits, temperature, top_k, top_p, generator)
        logps.append(torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1))
        # finished rows keep emitting the stop token
        tokens.append(torch.where(done, stop[0], tok))
        done |= torch.isin(tok, stop)
        if bool(done.all()) or i == max_new_tokens - 1:
            break
        logits = steps.send(tok).float()
    tokens_t, logps_t = torch.stack(tokens, 1).cpu(), torch.stack(logps, 1).cpu().numpy().astype(np.float64)
    hit = torch.isin(tokens_t, stop.cpu())
    ends = torch.where(hit.any(1), hit.int().argmax(1) + 1, hit.shape[1]).tolist()  # through the first stop
    return [(row[:end], logps_t[i, :end]) for i, (row, end) in enumerate(zip(tokens_t.tolist(), ends))]


def sample(
    model,
    tokenizer,
    prompts: Sequence[str],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    stop_token_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> Samples:
    """Sample one continuation per prompt (repeat a prompt to get several).

    Returns texts (special tokens and the stop token removed), the generated token ids
    (stop token included when reached) and their log-probabilities under the model.
    Generation for a row ends at the eos token (or any of ``stop_token_ids``) or after
    ``max_new_tokens``. Prompts are batched by length to waste little padding; the
    result is in the prompts' order and deterministic given ``seed``.
    """
    _check_args(prompts, temperature, top_k, top_p, max_new_tokens, batch_size)
    stop = _stop_ids(tokenizer, stop_token_ids)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list = [None] * len(prompts)
    starts = range(0, len(prompts), batch_size)
    for s in tqdm(starts, desc="sampling", disable=not progress, leave=False):
        idx = order[s : s + batch_size]
        rows = _sample_batch(
            model, tokenizer, [prompts[i] for i in idx], temperature, top_k, top_p, max_new_tokens, stop, generator
        )
        for i, row in zip(idx, rows):
            results[i] = row
    stop_set = set(stop.tolist())
    texts = [tokenizer.decode([t for t in ids if t not in stop_set], skip_special_tokens=True) for ids, _ in results]
    return Samples(texts, [ids for ids, _ in results], [lp for _, lp in results])


def token_logprobs(
    model, tokenizer, prompts: Sequence[str], completions: Sequence[str | Sequence[int]]
) -> list[torch.Tensor]:
    """:math:`\\log \\pi(y_t \\mid x, y_{<t})` for each token of each completion, as tensors from
    one padded forward pass (with gradients, where autograd is on: a policy-gradient loss
    differentiates their sums). Completions as in :func:`logprob_of`, which batches this."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids_of = token_ids_of(tokenizer, [*prompts, *(c for c in completions if isinstance(c, str))])
    pairs = []
    for p, c in zip(prompts, completions):
        p_ids, c_ids = ids_of[p], ids_of[c] if isinstance(c, str) else list(c)
        if not p_ids or not c_ids:
            raise ValueError("every prompt and completion must have at least one token")
        pairs.append((p_ids, c_ids))
    ids, mask = (t.to(model.device) for t in right_pad([p + c for p, c in pairs], pad))
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    # position len(p) - 1 + j predicts completion token j; one index for all rows, so that the
    # backward pass writes one gradient tensor instead of one (batch, time, vocab) tensor a row
    rows = [r for r, (_, c) in enumerate(pairs) for _ in c]
    steps = [len(p) - 1 + j for p, c in pairs for j in range(len(c))]
    tokens = [t for _, c in pairs for t in c]
    picked = logp[tuple(torch.tensor(x, device=ids.device) for x in (rows, steps, tokens))]
    return list(picked.split([len(c) for _, c in pairs]))


@torch.inference_mode()
def logprob_of(
    model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str | Sequence[int]],
    batch_size: int = 64,
) -> list[np.ndarray]:
    """Per-token log-probabilities :math:`\\log \\pi(y_t \\mid x, y_{<t})` of given completions.

    A completion is a string (tokenized on its own, as sampling produced it) or a list
    of token ids (e.g. ``Samples.token_ids``, to score exactly what was sampled).
    Sum an entry for the sequence log-likelihood :math:`\\log \\pi(y \\mid x)`.
    """
    if len(prompts) == 0 or len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions must be non-empty and of equal length, got {len(prompts)} and {len(completions)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out: list[np.ndarray] = []
    for s in range(0, len(prompts), batch_size):
        batch = token_logprobs(model, tokenizer, prompts[s : s + batch_size], completions[s : s + batch_size])
        out += [lp.cpu().numpy().astype(np.float64) for lp in batch]
    return out
