"""Offline inverse RL for query-dependent prompt optimisation (chapter 6).

Prompt-OIRL (Sun, Hüyük and van der Schaar, 2024) treats logs of past prompt
evaluations, rows of (query :math:`q`, prompt :math:`p`, was the answer right
:math:`z`), as demonstrations of which prompt works where.

* The **inverse** step learns a reward model offline, with no model call, by the binary
  cross-entropy :math:`-\\sum_{(q, p, z)} z \\log r(q, p) + (1 - z) \\log (1 - r(q, p))`,
  so that :math:`r(q, p) \\approx P(\\text{right} \\mid q, p)`. Its features are an
  embedding of the query and one of the prompt, concatenated (:func:`pair_features`).
* The **forward** step picks, for each new query, :math:`\\pi(q) = \\arg\\max_p r(q, p)`
  (:func:`choose_prompts`): one model call per query, and no access to the answer.
  With a budget of :math:`V` calls, :func:`vote_over_top_k` asks the :math:`V` prompts
  ranked highest and keeps the most common answer, and :func:`most_confident_of_top_k`
  keeps the answer the LLM is most confident in.

The baselines it must beat are fixed rules read off the same logs: the best single prompt,
and a lookup table of the best prompt per value of a visible feature of the query
(:func:`lookup_prompts`). The paper's :math:`K` is the number of prompts in the logs;
:func:`prompt_subsets` draws the subsets of logged prompts that a sweep over :math:`K`
averages over.

A :class:`CostMeter` counts what each strategy spends: model calls, generated tokens,
wall time.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from irlm.metrics import as_grid
from irlm.prompting import PromptGrid, best_prompt_per_bucket, best_single_prompt
from irlm.reward import majority_vote
from irlm.tasks import Query, get_prompt

LOG_COLUMNS = ("query", "a", "b", "op", "prompt_id", "response", "correct")


def check_prompt_split(seen: Sequence[str], held_out: Sequence[str]) -> None:
    """Raise unless the logged (``seen``) and ``held_out`` prompts are known ids, without
    repeats, disjoint, and at least two are logged (one prompt leaves nothing to choose)."""
    for p in [*seen, *held_out]:
        get_prompt(p)  # raises with the allowed ids
    if len(set(seen)) < 2 or len(set(seen)) != len(seen):
        raise ValueError(f"seen_prompts needs at least two distinct prompt ids, got {list(seen)}")
    if len(set(held_out)) != len(held_out):
        raise ValueError(f"held_out_prompts repeats a prompt: {list(held_out)}")
    both = sorted(set(seen) & set(held_out))
    if both:
        raise ValueError(f"a prompt cannot be both logged and held out: {both}")


def offline_logs(grid: PromptGrid):  # -> datasets.Dataset
    """The logs of a prompt evaluation as a ``datasets.Dataset``: one row per
    (query, prompt) with the response and whether it was right."""
    from datasets import Dataset

    rows = [
        {
            "query": q.text,
            "a": q.a,
            "b": q.b,
            "op": q.op,
            "prompt_id": p,
            "response": grid.texts[j][i],
            "correct": bool(grid.correct[i, j]),
        }
        for j, p in enumerate(grid.prompt_ids)
        for i, q in enumerate(grid.queries)
    ]
    return Dataset.from_list(rows)


def logs_to_grid(logs, prompt_ids: Sequence[str]) -> tuple[list[Query], np.ndarray]:
    """Back from logs to ``(queries, correct)``, ``correct[i, j]`` for query ``i`` under
    ``prompt_ids[j]``, keeping only queries logged under every one of those prompts."""
    if len(logs) == 0:
        raise ValueError("the log is empty; evaluate some prompts first (offline_logs)")
    if len(prompt_ids) == 0:
        raise ValueError("prompt_ids is empty; pass at least one prompt id")
    logged = set(logs["prompt_id"])
    for p in prompt_ids:
        get_prompt(p)  # raises with the allowed ids
        if p not in logged:
            raise ValueError(f"prompt {p!r} is not in the log; logged prompts: {sorted(logged)}")
    column = {p: j for j, p in enumerate(prompt_ids)}
    outcomes: dict[Query, dict[int, bool]] = {}
    for row in logs:
        if row["prompt_id"] in column:
            outcomes.setdefault(Query(row["a"], row["b"], row["op"]), {})[column[row["prompt_id"]]] = row["correct"]
    queries = [q for q, seen in outcomes.items() if len(seen) == len(prompt_ids)]
    correct = np.array([[outcomes[q][j] for j in range(len(prompt_ids))] for q in queries], dtype=bool)
    return queries, as_grid(correct)


def embed_queries_and_prompts(
    embed: Callable[[list[str]], np.ndarray], queries: Sequence[Query], prompt_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(query_features, prompt_features)``: ``embed`` applied to the query texts
    (``"57-28"``) and to the prompts' instruction texts. ``embed`` maps a list of texts
    to an ``(n, d)`` array: a sentence embedder, or a causal LM's hidden state."""
    if len(queries) == 0 or len(prompt_ids) == 0:
        raise ValueError("queries and prompt_ids must be non-empty")
    texts = [get_prompt(p).text for p in prompt_ids]  # raises with the allowed ids
    return np.asarray(embed([q.text for q in queries])), np.asarray(embed(texts))


def pair_features(query_features: np.ndarray, prompt_features: np.ndarray) -> np.ndarray:
    """Every (query, prompt) pair's features, the query's embedding and the prompt's
    concatenated as in Prompt-OIRL: shape ``(queries, prompts, d_query + d_prompt)``."""
    q, p = np.asarray(query_features, dtype=np.float32), np.asarray(prompt_features, dtype=np.float32)
    if q.ndim != 2 or p.ndim != 2 or len(q) == 0 or len(p) == 0:
        raise ValueError(f"need non-empty 2-D (items, dim) features, got shapes {q.shape} and {p.shape}")
    return np.concatenate([np.repeat(q[:, None], len(p), 1), np.repeat(p[None], len(q), 0)], axis=-1)


class PromptRewardModel:
    """:math:`r(q, p)`: a binary classifier of "right" on (query, prompt) features."""

    KINDS = ("lightgbm", "mlp")

    def __init__(self, kind: str = "lightgbm", seed: int = 0, threads: int = 2) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind, self.seed, self.threads = kind, seed, threads
        self._score = None

    def fit(self, features: np.ndarray, correct: np.ndarray) -> PromptRewardModel:
        """Fit on ``features`` of shape ``(queries, prompts, d)`` and the ``correct`` grid."""
        x, y = _flatten(features, correct)
        if len(np.unique(y)) != 2:
            raise ValueError("the log needs both right and wrong outcomes to learn from")
        if self.kind == "lightgbm":
            import lightgbm

            clf = lightgbm.LGBMClassifier(
                n_estimators=300,
                learning_rate=0.05,
                num_leaves=15,
                random_state=self.seed,
                n_jobs=self.threads,
                deterministic=True,
                force_row_wise=True,
                verbose=-1,
            )
            clf.fit(x, y)
            self._score = lambda f: clf.predict_proba(f)[:, 1]
        else:
            from irlm.preferences import train_classifier_head

            head = train_classifier_head(
                x, np.arange(len(x)), y.astype(np.float32), hidden=64, steps=300, seed=self.seed, threads=self.threads
            )
            self._score = lambda f: 1.0 / (1.0 + np.exp(-head.score(f)))
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """:math:`r(q, p)` for features of shape ``(queries, prompts, d)``: ``(queries, prompts)``."""
        if self._score is None:
            raise ValueError("fit the reward model before scoring")
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 3:
            raise ValueError(f"features must have shape (queries, prompts, dim), got {f.shape}")
        return np.asarray(self._score(f.reshape(-1, f.shape[-1])), dtype=np.float64).reshape(f.shape[:2])


def _flatten(features: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, c = np.asarray(features, dtype=np.float32), as_grid(correct)
    if f.ndim != 3 or f.shape[:2] != c.shape:
        raise ValueError(f"features must have shape (queries, prompts, dim) matching correct {c.shape}, got {f.shape}")
    return f.reshape(-1, f.shape[-1]), c.reshape(-1).astype(int)


def choose_prompts(scores: np.ndarray) -> np.ndarray:
    """The forward step: per query, the index of the highest-scoring prompt (the first
    one on ties)."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scores must be a non-empty (queries, prompts) array, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return np.argmax(s, axis=1)


def selected_correct(correct: np.ndarray, picks: Sequence[int]) -> np.ndarray:
    """Was the chosen prompt right, per query?"""
    c, picks = as_grid(correct), np.asarray(picks)
    if picks.shape != (len(c),) or picks.min() < 0 or picks.max() >= c.shape[1]:
        raise ValueError(f"picks must hold one prompt index in [0, {c.shape[1]}) per query ({len(c)})")
    return c[np.arange(len(c)), picks]


def lookup_prompts(correct: np.ndarray, keys: Sequence[Hashable], new_keys: Sequence[Hashable]) -> np.ndarray:
    """A fixed rule read off the logs: for each new query, the prompt most accurate on the
    logged queries with the same key (a visible feature of the query, such as its operation),

        pi(q) = argmax_p mean over logged q' with key(q') = key(q) of correct[q', p],

    and the best single prompt for a key the logs never saw. ``correct`` is the logs'
    (queries, prompts) grid and ``keys`` its queries' keys; returns one prompt index per
    entry of ``new_keys``."""
    keys = [str(k) for k in keys]
    table = best_prompt_per_bucket(correct, keys)  # ties: the prompt best on all the logs
    fallback = best_single_prompt(correct)
    return np.array([table.get(str(k), fallback) for k in new_keys], dtype=int)


def prompt_subsets(n_prompts: int, k: int, max_subsets: int, seed: int = 0) -> list[tuple[int, ...]]:
    """The size-``k`` subsets of ``range(n_prompts)`` that a sweep over the number of logged
    prompts averages over: all C(n_prompts, k) of them when there are at most
    ``max_subsets``, else ``max_subsets`` of them drawn uniformly without replacement, so the
    mean over the draw is an unbiased estimate of the mean over all subsets."""
    if not 1 <= k <= n_prompts:
        raise ValueError(f"k must lie in [1, n_prompts={n_prompts}], got {k}")
    if max_subsets < 1:
        raise ValueError(f"max_subsets must be >= 1, got {max_subsets}")
    if math.comb(n_prompts, k) <= max_subsets:
        return list(itertools.combinations(range(n_prompts), k))
    every = list(itertools.combinations(range(n_prompts), k))
    return sorted(random.Random(seed).sample(every, max_subsets))


def rank_prompts(scores: np.ndarray) -> np.ndarray:
    """Per query, prompt indices from the highest score to the lowest (stable on ties)."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scores must be a non-empty (queries, prompts) array, got shape {s.shape}")
    return np.argsort(-s, axis=1, kind="stable")


def vote_over_top_k(answers: Sequence[Sequence], order: np.ndarray, k: int) -> np.ndarray:
    """Best-of-K prompts: per query, call the ``k`` prompts ranked first by ``order`` and
    keep the most common answer, ties to the higher-ranked prompt. Returns the index of
    the prompt whose answer is kept. ``answers[i][j]`` is prompt ``j``'s answer to query ``i``."""
    order = np.asarray(order)
    if order.ndim != 2 or len(order) != len(answers):
        raise ValueError(f"order must have shape (queries, prompts) with {len(answers)} queries, got {order.shape}")
    if not 1 <= k <= order.shape[1]:
        raise ValueError(f"k must lie in [1, {order.shape[1]}], got {k}")
    ranked = [[row[j] for j in ranks] for row, ranks in zip(answers, order)]
    return order[np.arange(len(order)), majority_vote(ranked, k)]


def most_confident_of_top_k(confidence: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Per query, call the ``k`` prompts ranked first by ``order`` and keep the answer with
    the highest ``confidence`` (e.g. the LLM's mean token log-probability), ties to the
    higher-ranked prompt. Returns the index of the prompt whose answer is kept."""
    confidence, order = np.asarray(confidence, dtype=float), np.asarray(order)
    if order.ndim != 2 or confidence.shape != order.shape:
        raise ValueError(
            f"confidence and order must share one (queries, prompts) shape, got {confidence.shape}, {order.shape}"
        )
    if not 1 <= k <= order.shape[1]:
        raise ValueError(f"k must lie in [1, {order.shape[1]}], got {k}")
    top = order[:, :k]
    best = np.argmax(np.take_along_axis(confidence, top, axis=1), axis=1)  # first of the tied
    return top[np.arange(len(top)), best]


@dataclass
class CostMeter:
    """What a strategy spends: model calls, generated tokens and wall time. Time what
    runs inside ``with meter:``; add calls and tokens with :meth:`record`."""

    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def record(self, calls: int, tokens: int = 0) -> None:
        if calls < 0 or tokens < 0:
            raise ValueError(f"calls and tokens must be >= 0, got {calls} and {tokens}")
        self.calls += calls
        self.tokens += tokens

    def __enter__(self) -> CostMeter:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start
