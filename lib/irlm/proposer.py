"""A language model as the proposer of a search (chapter 7).

``LMProposer(model, tokenizer)(state)`` samples ``k`` next steps of a Countdown state: the
model writes ``"a op b"`` and stops at ``=``; the environment computes the result
(:func:`irlm.countdown.parse_proposal`). Each legal, distinct step comes back as a
:class:`irlm.search.Proposal` with its log-probability :math:`\\log \\pi(\\text{"a op b"}
\\mid s)`, the prior of MCTS.

Compute is counted in **LM forward tokens**, what a KV-cached implementation processes:
the tokens of the state not yet encoded, plus every sampled token. With
``reuse_cache=True`` a state's KV cache is kept, and a child, whose text is its parent's
plus one step, feeds only that step's tokens on top of a copy of the parent's cache.
With ``reuse_cache=False`` every call encodes the whole text again, as a plain
``generate`` per node would. The zoo's GPT-2 models run through :mod:`irlm.tinygpt` and
its cache written in place (the same proposals, a test checks); any other causal LM
through its own forward and cache.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from irlm import tinygpt
from irlm.countdown import State, parse_proposal
from irlm.sampling import _cache_arg, _cache_of, next_token, sample, token_ids_of
from irlm.search import Proposal, Proposals
from irlm.sft import deterministic


class LMProposer:
    """``propose(state)``: ``k`` sampled next steps, distinct and legal, as proposals.

    ``tokens`` and ``calls`` count what has been spent; ``temperature=0`` is greedy (then
    one sample is enough). Deterministic given ``seed``. It runs on ``threads`` CPU threads:
    one state at a time, its matrices are too small to gain from more (on a 2-core CPU one
    thread ran the chapter's searches faster than two; ``make bench`` measures it).
    """

    def __init__(
        self,
        model,
        tokenizer,
        k: int = 8,
        temperature: float = 1.0,
        max_step_tokens: int = 6,
        seed: int = 0,
        reuse_cache: bool = True,
        threads: int = 1,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if max_step_tokens < 1:
            raise ValueError(f"max_step_tokens must be >= 1, got {max_step_tokens}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model, self.tokenizer = model, tokenizer
        self.k, self.temperature, self.max_step_tokens = k, temperature, max_step_tokens
        self.reuse_cache, self.threads = reuse_cache, threads
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.stop = torch.tensor(sorted({_equals_id(tokenizer), tokenizer.eos_token_id}), device=model.device)
        self._kv: dict[str, tuple[list[int], object, torch.Tensor]] = {}
        self.fast = tinygpt.supports(model)
        self.tokens = 0
        self.calls = 0

    def _encode(self, state: State) -> tuple[object, torch.Tensor, int]:
        """The KV cache after ``state.text``, the next-token logits and the text's length in
        tokens, feeding only what
        the parent's cache lacks when ``reuse_cache``."""
        ids = token_ids_of(self.tokenizer, [state.text])[state.text]
        past, start = None, 0
        if self.reuse_cache and state.steps:
            parent = self._kv.get(State(state.puzzle, state.steps[:-1]).text)
            if parent is not None and ids[: len(parent[0])] == parent[0]:
                past, start = parent[1], len(parent[0])
        feed = torch.tensor([ids[start:]], device=self.model.device)
        if self.fast:  # the zoo's GPT-2: irlm.tinygpt, a cache written in place
            cache = past.clone(start) if past is not None else tinygpt.KVCache(self.model, 1)
            logits = tinygpt.extend(self.model, feed, cache, start).float()
        else:
            kwargs = {_cache_arg(self.model): copy.deepcopy(past)} if past is not None else {}
            out = self.model(input_ids=feed, use_cache=True, **kwargs)
            cache, logits = _cache_of(out), out.logits[:, -1].float()
        self.tokens += feed.shape[1]
        if self.reuse_cache:
            self._kv[state.text] = (ids, cache, logits)
        return cache, logits, len(ids)

    def _steps(self, cache, logits: torch.Tensor, length: int, n: int):
        """Next-token logits for ``n`` continuations of one encoded state: a generator that
        is sent the tokens just drawn."""
        if self.fast:
            cache = cache.clone(length, repeat=n)
        else:
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(n)
        logits = logits.expand(n, -1)
        while True:
            tok = yield logits
            if self.fast:
                logits = tinygpt.extend(self.model, tok[:, None], cache, length).float()
            else:
                out = self.model(input_ids=tok[:, None], use_cache=True, **{_cache_arg(self.model): cache})
                cache, logits = _cache_of(out), out.logits[:, -1].float()
            length += 1

    def __call__(self, state: State) -> Proposals:
        self.calls += 1
        if state.is_terminal:
            return Proposals([], cost=0)
        with torch.inference_mode(), deterministic(self.threads):
            return self._propose(state)

    def _propose(self, state: State) -> Proposals:
        spent = self.tokens
        n = 1 if self.temperature == 0 else self.k
        steps = self._steps(*self._encode(state), n)
        logits = next(steps)
        done = torch.zeros(n, dtype=torch.bool, device=self.model.device)
        tokens, logps = [], torch.zeros(n, dtype=torch.float64)
        for _ in range(self.max_step_tokens):
            tok = next_token(logits, self.temperature, 0, 1.0, self.generator)
            logps += torch.where(done, 0.0, torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1)).cpu()
            tokens.append(torch.where(done, self.stop[0], tok))
            self.tokens += int((~done).sum())
            done |= torch.isin(tok, self.stop)
            if bool(done.all()):
                break
            logits = steps.send(tok)
        texts = self.tokenizer.batch_decode(torch.stack(tokens, 1), skip_special_tokens=True)
        best: dict = {}
        for text, lp in zip(texts, logps.tolist()):
            step = parse_proposal(state, text.split("=")[0])
            if step is not None and step not in best:
                best[step] = lp
        proposals = [Proposal(s, _after(state, s), lp) for s, lp in best.items()]
        return Proposals(proposals, cost=self.tokens - spent)


def _equals_id(tokenizer) -> int:
    ids = tokenizer("=", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError("the tokenizer must write '=' as one token")
    return ids[0]


def _after(state: State, step) -> State:
    return State(state.puzzle, (*state.steps, step))


def rollouts(
    model, tokenizer, starts: list[State], n: int = 1, temperature: float = 1.0, seed: int = 0, batch_size: int = 512
) -> tuple[list[State], np.ndarray]:
    """``n`` trajectories from each start state to the end, batched: at each depth the model
    writes ``"a op b"`` for every unfinished trajectory and the environment completes the
    step; an illegal step ends a trajectory where it stands (a dead end). Greedy with
    ``temperature=0``; from ``State(puzzle)``, whole solutions.

    Returns the final states (``n`` per start, in order) and each trajectory's cost in LM
    forward tokens with a KV cache: its text once, plus the tokens of a failed last step.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not starts:
        raise ValueError("starts is empty")
    states = [s for s in starts for _ in range(n)]
    alive = np.ones(len(states), dtype=bool)
    wasted = np.zeros(len(states), dtype=np.int64)
    for depth in range(max(len(s.remaining) for s in starts) - 1):
        todo = [i for i, s in enumerate(states) if alive[i] and not s.is_terminal]
        if not todo:
            break
        out = sample(
            model,
            tokenizer,
            [states[i].text for i in todo],
            temperature=temperature,
            max_new_tokens=6,
            batch_size=batch_size,
            seed=seed + depth,
            stop_token_ids=[_equals_id(tokenizer)],
        )
        for i, text, ids in zip(todo, out.texts, out.token_ids):
            step = parse_proposal(states[i], text)
            if step is None:
                alive[i], wasted[i] = False, len(ids)
            else:
                states[i] = _after(states[i], step)
    ids_of = token_ids_of(tokenizer, (s.text for s in states))
    tokens = np.array([len(ids_of[s.text]) for s in states]) + wasted
    return states, tokens
