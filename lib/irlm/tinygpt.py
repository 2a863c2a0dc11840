"""GPT-2's forward pass written out compactly, over the weights of a ``GPT2LMHeadModel``.

The zoo's models are real ``transformers`` GPT-2 models, saved and loaded as such. At
0.2M parameters their time goes to Python layers, padding and masks, not to arithmetic,
so training (:func:`irlm.sft.behaviour_clone`) and sampling (:func:`irlm.sampling.sample`)
run them through this module instead: the same function (a test checks the logits
against ``transformers``), read from the very same parameter tensors, so training here
trains the ``transformers`` model in place.

Two things it does that the generic path cannot:

* **packed rows**: several demonstrations share one row of the batch; each attends only
  to itself (a block-diagonal causal mask) and counts its positions from 0, so the
  result equals running each demonstration alone, with no compute spent on padding;
* **a key/value cache written in place** for sampling, grown a block of positions at a
  time, so attention reads one contiguous tensor instead of re-concatenating every step.

Like nanoGPT's ``model.py``: B batch, T time, C channels (``n_embd``), nh heads, hs
head size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def supports(model) -> bool:
    """True for a plain ``GPT2LMHeadModel`` whose forward this module reproduces exactly."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "GPT2LMHeadModel"
        and config.activation_function == "gelu"
        and not config.scale_attn_by_inverse_layer_idx
        and not config.reorder_and_upcast_attn
        and config.scale_attn_weights
        and model.lm_head.weight is model.transformer.wte.weight
    )


def _check(model) -> None:
    if not supports(model):
        raise ValueError(
            "model must be a GPT2LMHeadModel with activation_function='gelu', tied embeddings and the "
            f"default attention scaling (the zoo's models), got {type(model).__name__}"
        )


def _attend(block, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None, layer: int, at: int):
    """One attention sub-layer: x (B, T, C) -> (B, T, C). With a ``cache``, this step's keys
    and values are written at positions ``[at, at + T)`` and the queries attend over the
    cache, ``mask`` saying which of its positions each may see."""
    attn, (B, T, C) = block.attn, x.shape
    nh = attn.num_heads
    qkv = torch.addmm(attn.c_attn.bias, x.reshape(B * T, C), attn.c_attn.weight)
    q, k, v = qkv.view(B, T, 3, nh, C // nh).permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
    if cache is None:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
    else:
        k, v = cache.write(layer, k, v, at)
        mask = F.pad(mask, (0, k.shape[2] - mask.shape[-1]))  # unwritten positions: not seen
        # softmax(q k^T / sqrt(hs)) v written out: for a few queries over a cache it beats the fused kernel
        scores = (q @ k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5).masked_fill_(~mask, float("-inf"))
        y = scores.softmax(-1) @ v
    y = y.transpose(1, 2).reshape(B * T, C)
    return torch.addmm(attn.c_proj.bias, y, attn.c_proj.weight).view(B, T, C)


def _mlp(block, x: torch.Tensor) -> torch.Tensor:
    B, T, C = x.shape
    mlp = block.mlp
    h = F.gelu(torch.addmm(mlp.c_fc.bias, x.reshape(B * T, C), mlp.c_fc.weight))
    return torch.addmm(mlp.c_proj.bias, h, mlp.c_proj.weight).view(B, T, C)


def hidden_states(
    model,
    ids: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor | None = None,
    cache: KVCache | None = None,
    at: int = 0,
) -> torch.Tensor:
    """The final hidden states (B, T, C), after the last layer norm.

    ``mask`` is a boolean (B, 1, T, keys) "may attend" mask, or ``None`` for plain causal
    attention; with a :class:`KVCache`, ``ids`` are the tokens at positions ``[at, at + T)``
    of the text and ``mask`` covers its keys ``[0, at + T)``."""
    gpt = model.transformer
    eps = model.config.layer_norm_epsilon
    x = gpt.wte(ids) + gpt.wpe(positions)
    for i, block in enumerate(gpt.h):
        ln1, ln2 = block.ln_1, block.ln_2
        h = F.layer_norm(x, ln1.normalized_shape, ln1.weight, ln1.bias, eps)
        x = x + _attend(block, h, mask, cache, i, at)
        x = x + _mlp(block, F.layer_norm(x, ln2.normalized_shape, ln2.weight, ln2.bias, eps))
    return F.layer_norm(x, gpt.ln_f.normalized_shape, gpt.ln_f.weight, gpt.ln_f.bias, eps)


def logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Next-token logits from hidden states: the output layer is the token embedding."""
    return hidden @ model.transformer.wte.weight.T


# --- training on packed rows -----------------------------------------------------------------


def pack(rows: Sequence[tuple[list[int], list[int]]], width: int, pad_id: int) -> tuple[torch.Tensor, ...]:
    """Pack ``(prompt ids, response ids)`` demonstrations into rows of ``width`` tokens.

    First-fit by decreasing length. Returns ``(ids, positions, doc, targets)``, each (R, width):
    ``doc`` numbers the demonstrations of a row (-1 on padding), ``positions`` restart at 0
    for each demonstration, and ``targets[r, t]`` is the token that position t must predict
    (a response token) or -100 (prompt, last token, padding), as in :func:`irlm.sft.pad_batch`.
    """
    if not rows or max(len(p) + len(r) for p, r in rows) > width:
        raise ValueError(f"rows must be non-empty and each at most width={width} tokens long")
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -(len(rows[i][0]) + len(rows[i][1]))):
        n = len(rows[i][0]) + len(rows[i][1])
        j = next((j for j, free in enumerate(room) if free >= n), len(bins))
        if j == len(bins):
            bins.append([])
            room.append(width)
        bins[j].append(i)
        room[j] -= n
    ids = np.full((len(bins), width), pad_id, dtype=np.int64)
    positions = np.zeros((len(bins), width), dtype=np.int64)
    doc = np.full((len(bins), width), -1, dtype=np.int64)
    targets = np.full((len(bins), width), -100, dtype=np.int64)
    for r, members in enumerate(bins):
        at = 0
        for d, i in enumerate(members):
            prompt, response = rows[i]
            n = len(prompt) + len(response)
            ids[r, at : at + n] = prompt + response
            positions[r, at : at + n] = np.arange(n)
            doc[r, at : at + n] = d
            # position t predicts token t + 1: the response tokens are predicted from len(prompt) - 1 on
            targets[r, at + len(prompt) - 1 : at + n - 1] = response
            at += n
    return tuple(torch.from_numpy(a) for a in (ids, positions, doc, targets))


def packed_mask(doc: torch.Tensor) -> torch.Tensor:
    """(R, 1, T, T) boolean mask: a token attends to the earlier tokens of its own
    demonstration (padding, doc -1, to its own padding, so no row of the mask is empty)."""
    T = doc.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc.device).tril()
    return (doc[:, None, :, None] == doc[:, None, None, :]) & causal


def packed_nll(model, ids: torch.Tensor, positions: torch.Tensor, doc: torch.Tensor, targets: torch.Tensor):
    """The SFT loss (:func:`irlm.sft.response_nll`) of packed rows: the mean NLL of the
    response tokens, with logits computed at those positions only."""
    _check(model)
    hidden = hidden_states(model, ids, positions, packed_mask(doc))
    keep = (targets != -100).flatten().nonzero().squeeze(-1)
    picked = hidden.flatten(0, 1).index_select(0, keep)
    return F.cross_entropy(logits(model, picked).float(), targets.flatten().index_select(0, keep))


# --- sampling with a key/value cache ---------------------------------------------------------


class KVCache:
    """Each layer's keys and values, (B, nh, capacity, hs), written in place; the capacity
    grows ``block`` positions at a time, so most steps copy nothing but their own keys."""

    def __init__(self, model, batch: int, block: int = 32) -> None:
        _check(model)
        config, w = model.config, model.transformer.wte.weight
        empty = (batch, config.n_head, 0, config.n_embd // config.n_head)
        self.block = block
        self.layers = [(w.new_empty(empty), w.new_empty(empty)) for _ in range(config.n_layer)]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, at: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at positions ``[at, at + T)``; returns all keys and values."""
        keys, values = self.layers[layer]
        end = at + k.shape[2]
        if end > keys.shape[2]:
            room = -(-end // self.block) * self.block - keys.shape[2]
            grow = keys.new_zeros((*keys.shape[:2], room, keys.shape[3]))
            keys, values = torch.cat([keys, grow], dim=2), torch.cat([values, grow], dim=2)
            self.layers[layer] = keys, values
        keys[:, :, at:end], values[:, :, at:end] = k, v
        return keys, values

    def select(self, rows: torch.Tensor) -> KVCache:
        """A new cache whose row i is this one's row ``rows[i]`` (all positions)."""
        out = KVCache.__new__(KVCache)
        out.block = self.block
        out.layers = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.layers]
        return out

    def clone(self, length: int, repeat: int = 1) -> KVCache:
        """A new cache holding this one's first ``length`` positions, each row repeated
        ``repeat`` times (row i becomes rows ``[i * repeat, (i + 1) * repeat)``), with room
        for the next block of positions."""
        out = KVCache.__new__(KVCache)
        out.block, out.layers = self.block, []
        room = -(-(length + 1) // self.block) * self.block
        for pair in self.layers:
            B, nh, _, hs = pair[0].shape
            copies = tuple(t.new_zeros((B, repeat, nh, room, hs)) for t in pair)
            for new, old in zip(copies, pair):
                new[:, :, :, :length] = old[:, None, :, :length]
            out.layers.append(tuple(new.view(B * repeat, nh, room, hs) for new in copies))
        return out


def extend(model, ids: torch.Tensor, cache: KVCache, at: int) -> torch.Tensor:
    """Next-token logits (B, V) after feeding ``ids`` (B, T), the tokens at positions
    ``[at, at + T)`` of every row, on top of a ``cache`` holding positions ``[0, at)``
    (causal; no padding). The cache then holds ``[0, at + T)``."""
    B, T = ids.shape
    positions = torch.arange(at, at + T, device=ids.device).expand(B, T)
    mask = torch.ones(T, at + T, dtype=torch.bool, device=ids.device).tril(diagonal=at)[None, None]
    return logits(model, hidden_states(model, ids, positions, mask, cache, at)[:, -1])
