"""Reasoning as search: MCTS with PUCT and step-level beam search under a compute budget (chapter 7).

A search only sees a few callables, so it runs the same on a toy tree, on Countdown with an
exact value (:mod:`irlm.countdown`) or on a language model with a process reward model:

* ``propose(state)`` the candidate next steps, each a :class:`Proposal` ``(step, state,
  logprob[, tokens])``: the step, the state it leads to and the proposer's log-probability;
* ``value(state)`` an estimate in ``[0, 1]`` of how good a non-terminal state is (a PRM, the
  exact value, a rollout);
* ``is_terminal(state)`` and ``reward(state)``, the score in ``[0, 1]`` of a finished one.

Every call of ``propose`` is paid from a :class:`Budget`, so methods compare at equal compute;
``value`` and ``reward`` are free (a value function may charge the same budget itself).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

UNITS = ("calls", "tokens")


class Proposal(NamedTuple):
    """A candidate step: the state it leads to, its log-probability and what writing it cost."""

    step: Hashable
    state: Any
    logprob: float
    tokens: int = 1


class Proposals(list):
    """What one ``propose`` call returned, with what it ``cost`` in tokens, samples it
    discarded included; a plain list of proposals costs the sum of their ``tokens``."""

    def __init__(self, proposals: Iterable[Proposal] = (), cost: int | None = None) -> None:
        super().__init__(proposals)
        self.cost = cost


@dataclass
class Budget:
    """A hard limit on compute: ``limit`` proposer calls (``unit="calls"``) or tokens, the sum of
    :attr:`Proposal.tokens` (``unit="tokens"``). A charge that would overrun is refused."""

    limit: int
    unit: str = "calls"
    spent: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"budget limit must be an int >= 1, got {self.limit!r}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")

    @property
    def remaining(self) -> int:
        return self.limit - self.spent

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def cost(self, proposals: Iterable[Proposal]) -> int:
        """What one ``propose`` call that returned ``proposals`` costs in this budget's unit."""
        return 1 if self.unit == "calls" else sum(p.tokens for p in proposals)

    def charge(self, amount: int) -> bool:
        """Spend ``amount`` if it fits in what remains; ``False`` (and nothing spent) if not."""
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")
        if amount > self.remaining:
            return False
        self.spent += amount
        return True


@dataclass(eq=False)
class Node:
    """A node of the search tree: visit count ``N``, value sum ``W`` (so :math:`Q = W / N`),
    prior ``P`` from the parent's proposals, and ``value``, the node's own evaluation."""

    state: Any
    step: Hashable = None
    P: float = 1.0
    logprob: float = 0.0
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] = field(default_factory=list, repr=False)
    N: int = 0
    W: float = 0.0
    value: float | None = None
    terminal: bool = False
    expanded: bool = False
    exhausted: bool = False  # the node and everything below it have been evaluated
    proposals: int = 0  # calls of propose made at this node

    @property
    def Q(self) -> float:
        return self.W / self.N if self.N else 0.0

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1


class Result(NamedTuple):
    """A search's answer: the best terminal state found (``None`` if none), its reward, the
    compute spent and the tree it grew."""

    best: Any
    reward: float | None
    spent: int
    tree: Node


def memo(score: Callable[[list], Iterable[float]], states: Iterable[Hashable]) -> Callable[[Hashable], float]:
    """``value(state)`` for a search from a batch scorer: ``score`` (a list of states -> one
    value each) runs once over ``states`` (e.g. every state reachable from the puzzles), and a
    state outside them is scored alone when first asked for and remembered. A learned value
    is a function of the state, so this changes no result, only how often the scorer runs."""
    states = list(states)
    table = dict(zip(states, score(states))) if states else {}

    def value(state: Hashable) -> float:
        if state not in table:
            table[state] = next(iter(score([state])))
        return float(table[state])

    return value


def _as_budget(budget: Budget | int) -> Budget:
    return budget if isinstance(budget, Budget) else Budget(budget)


def _softmax(logprobs: list[float]) -> list[float]:
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    return [w / sum(weights) for w in weights]


def _expand(node: Node, propose: Callable, is_terminal: Callable, budget: Budget) -> bool:
    """Ask ``propose`` for ``node``'s next steps and add a child for each step not there yet;
    the priors of all children are :math:`P = \\mathrm{softmax}(\\log p)`. ``False``, and
    nothing changes, if the budget cannot pay for the call."""
    if budget.exhausted:
        return False
    raw = propose(node.state)
    proposals = [Proposal(*p) for p in raw]
    cost = getattr(raw, "cost", None)
    if not budget.charge(cost if cost is not None and budget.unit == "tokens" else budget.cost(proposals)):
        return False
    known = {c.step for c in node.children}
    for p in proposals:
        if p.step not in known:
            known.add(p.step)
            node.children.append(Node(p.state, p.step, 0.0, p.logprob, parent=node, terminal=is_terminal(p.state)))
    if node.children:
        for child, prior in zip(node.children, _softmax([c.logprob for c in node.children])):
            child.P = prior
    node.expanded, node.proposals = True, node.proposals + 1
    return True


def _mark_exhausted(node: Node | None, widen: int = 0) -> None:
    """Mark ``node`` and its ancestors exhausted while everything below is evaluated and the
    node may not ask the proposer again."""
    while (
        node is not None
        and (node.terminal or (node.expanded and node.proposals > widen))
        and all(c.exhausted for c in node.children)
    ):
        node.exhausted = True
        node = node.parent


def _can_widen(node: Node, widen: int) -> bool:
    return node.expanded and node.proposals <= widen and all(c.exhausted for c in node.children)


def puct(child: Node, parent: Node, c_puct: float) -> float:
    """The PUCT score :math:`Q(s, a) + c_{\\text{puct}} P(s, a) \\sqrt{N(s)} / (1 + N(s, a))`.

    An unvisited child has no :math:`Q(s, a)` yet; it gets its parent's :math:`Q(s)`, the
    *first-play value* of common AlphaZero implementations. On a ``[0, 1]`` value scale a
    default of 0 would rank every untried step with a dead end, so a search would revisit
    a sibling it already knows is dead before it tries one it knows nothing about."""
    q = child.Q if child.N else parent.Q
    return q + c_puct * child.P * math.sqrt(parent.N) / (1 + child.N)


def mcts(
    root: Any,
    propose: Callable[[Any], Iterable[Proposal]],
    value: Callable[[Any], float],
    is_terminal: Callable[[Any], bool],
    reward: Callable[[Any], float],
    budget: Budget | int,
    c_puct: float = 1.0,
    max_simulations: int = 10_000,
    stop_at: float | None = None,
    widen: int = 0,
) -> Result:
    """Monte Carlo tree search with the PUCT rule of AlphaGo Zero (Silver et al., 2017).

    Each simulation (1) *selects* from the root down to a leaf, at each node the child that
    maximises :func:`puct`, :math:`Q(s,a) + c_{\\text{puct}} P(s,a) \\sqrt{N(s)}/(1 + N(s,a))`
    (UCT's optimism, Kocsis & Szepesvari 2006, weighted by the proposer's prior);
    (2) *evaluates* a leaf met for the first time, ``value(s)`` or ``reward(s)`` at a
    terminal, or *expands* one met again by one call of ``propose``, the children's priors
    the softmax of the proposals' log-probabilities (proposing is the expensive part, so a
    leaf that looks hopeless is never expanded); (3) *backs up* its value :math:`v`:
    :math:`N \\mathrel{+}= 1, W \\mathrel{+}= v` on the path, so :math:`Q = W/N` is the mean
    evaluation below each edge. An unvisited child counts as its parent's :math:`Q`
    (see :func:`puct`), so among untried steps the prior decides.

    A sampling proposer may miss the good steps of a state. With ``widen > 0``, a node whose
    children are all exhausted (every one evaluated, down to the leaves) asks the proposer
    again, up to ``widen`` more times, and gains the new steps it returns as children.

    Stops when the budget cannot pay for an expansion, after ``max_simulations``, when the
    whole tree has been evaluated, or once a terminal with reward ``>= stop_at`` is found.
    ``best`` is the terminal with the highest reward found (the first on ties); the most
    visited line is :func:`most_visited_path`; ``tree.N`` counts the simulations.
    """
    budget = _as_budget(budget)
    if c_puct < 0:
        raise ValueError(f"c_puct must be >= 0, got {c_puct}")
    if max_simulations < 1:
        raise ValueError(f"max_simulations must be >= 1, got {max_simulations}")
    if widen < 0:
        raise ValueError(f"widen must be >= 0, got {widen}")
    tree, best = Node(root, terminal=is_terminal(root)), None
    for _ in range(max_simulations):
        node = tree
        while node.children and not _can_widen(node, widen):
            node = max(node.children, key=lambda c, n=node: puct(c, n, c_puct))  # first on ties
        if _can_widen(node, widen):  # every child exhausted: ask the proposer again
            if not _expand(node, propose, is_terminal, budget):
                break
            _mark_exhausted(node, widen)
        elif node.value is None:  # first visit: evaluate
            node.value = float(reward(node.state) if node.terminal else value(node.state))
            if node.terminal and (best is None or node.value > best.value):
                best = node
            _mark_exhausted(node, widen)
        elif not node.terminal and not node.expanded:  # second visit: expand
            if not _expand(node, propose, is_terminal, budget):
                break
            _mark_exhausted(node, widen)
        for n in _path(node):
            n.N += 1
            n.W += node.value
        if tree.exhausted or (stop_at is not None and best is not None and best.value >= stop_at):
            break
    return _result(best, budget, tree)


def _result(best: Node | None, budget: Budget, tree: Node) -> Result:
    if best is None:
        return Result(None, None, budget.spent, tree)
    return Result(best.state, best.value, budget.spent, tree)


def _path(node: Node | None) -> list[Node]:
    """``node`` and its ancestors up to the root."""
    out = []
    while node is not None:
        out.append(node)
        node = node.parent
    return out


def beam_search(
    root: Any,
    propose: Callable[[Any], Iterable[Proposal]],
    value: Callable[[Any], float],
    is_terminal: Callable[[Any], bool],
    reward: Callable[[Any], float],
    budget: Budget | int,
    beam_width: int = 4,
) -> Result:
    """Step-level beam search: expand every unfinished state of the beam, score each child
    (``value``, or ``reward`` if it is terminal) and keep the ``beam_width`` best of the
    children and the beam's finished states (stable: earlier proposals win ties), until the
    beam is all finished, empty, or the budget cannot pay. ``beam_width=1`` is greedy
    decoding by value. ``best`` is the terminal with the highest reward ever scored."""
    budget = _as_budget(budget)
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    tree = Node(root, terminal=is_terminal(root))
    tree.value = float(reward(root) if tree.terminal else value(root))
    beam, best, paid = [tree], (tree if tree.terminal else None), True
    while paid and any(not n.terminal for n in beam):
        candidates = []
        for node in beam:
            if not node.terminal:
                paid = _expand(node, propose, is_terminal, budget)
                if not paid:
                    break
            candidates += [node] if node.terminal else node.children
        for child in candidates:
            if child.value is None:
                child.value = float(reward(child.state) if child.terminal else value(child.state))
            if child.terminal and (best is None or child.value > best.value):
                best = child
        beam = sorted(candidates, key=lambda n: n.value, reverse=True)[:beam_width] if paid else beam
    return _result(best, budget, tree)


def most_visited_path(tree: Node) -> list[Node]:
    """From the root, the most visited child (the first on ties) while it has been visited:
    the line MCTS believes in (AlphaZero plays its first move)."""
    path = [tree]
    while path[-1].children:
        child = max(path[-1].children, key=lambda c: c.N)
        if child.N == 0:
            break
        path.append(child)
    return path


def tree_edges(tree: Node, max_depth: int | None = None, min_visits: int = 0) -> list[tuple[Node, Node]]:
    """The tree as ``(parent, child)`` edges in breadth-first order, for drawing: children
    visited fewer than ``min_visits`` times (and all below them) and nodes deeper than
    ``max_depth`` are left out."""
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"max_depth must be >= 0 or None, got {max_depth}")
    edges, queue = [], deque([tree])
    while queue:
        node = queue.popleft()
        if max_depth is not None and node.depth >= max_depth:
            continue
        for child in node.children:
            if child.N >= min_visits:
                edges.append((node, child))
                queue.append(child)
    return edges


def sample_until_solved(
    costs: np.ndarray,
    solved: np.ndarray,
    budgets: Iterable[int],
    shared: float | np.ndarray = 0,
    draws: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """Best-of-:math:`N` with a free outcome check as an anytime search: draw whole samples in
    a random order until one is solved, paying ``shared`` once (a prompt kept in a KV cache; a
    number, or one per query) and then each sample's ``costs``. For each query (row) and budget :math:`b`, the
    probability over orders that a solved sample arrives with at most :math:`b` spent,

    .. math:: \\Pr_\\sigma\\big[\\textstyle\\text{shared} + \\sum_{j \\le t_\\sigma} c_{\\sigma(j)} \\le b\\big],

    :math:`t_\\sigma` the position of the first solved sample in order :math:`\\sigma`
    (never, if none is solved), estimated from ``draws`` random orders. The average over
    orders makes the curve independent of the order the samples were drawn in.
    ``costs`` and ``solved`` have shape ``(queries, samples)``; returns ``(queries, budgets)``."""
    costs, solved = np.asarray(costs, dtype=float), np.asarray(solved, dtype=bool)
    if costs.ndim != 2 or costs.shape != solved.shape:
        raise ValueError(f"costs and solved must be 2-D of one shape, got {costs.shape} and {solved.shape}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    budgets = np.asarray(list(budgets), dtype=float)
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((draws, *costs.shape)), axis=-1)  # (draws, queries, samples)
    spent = np.asarray(shared, dtype=float).reshape(-1, 1) + np.cumsum(np.take_along_axis(costs[None], order, -1), -1)
    hit = np.take_along_axis(solved[None], order, -1)
    first = np.where(hit.any(-1), np.take_along_axis(spent, hit.argmax(-1)[..., None], -1)[..., 0], np.inf)
    return (first[..., None] <= budgets).mean(0)


def first_solved_within(
    costs: np.ndarray, solved: np.ndarray, budget: float, shared: float | np.ndarray = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The rule of :func:`sample_until_solved` for the one order the samples were drawn in:
    take each query's samples in order, paying ``shared`` once and then each sample's
    ``costs``, until one is solved or the next would bring the total past ``budget``. Sample
    :math:`j` is reached when :math:`\\text{shared} + \\sum_{i \\le j} c_i \\le b`. Returns, per
    query, the index of the first solved sample reached (-1 if none) and the tokens spent
    (the total at that sample, or at the last sample reached; ``shared`` if none is).
    ``costs`` and ``solved`` have shape ``(queries, samples)``; costs are >= 0."""
    costs, solved = np.asarray(costs, dtype=float), np.asarray(solved, dtype=bool)
    if costs.ndim != 2 or costs.shape != solved.shape:
        raise ValueError(f"costs and solved must be 2-D of one shape, got {costs.shape} and {solved.shape}")
    if (costs < 0).any():
        raise ValueError("costs must be >= 0")
    shared = np.broadcast_to(np.asarray(shared, dtype=float), (len(costs),))
    total = shared[:, None] + np.cumsum(costs, 1)
    reached = total <= budget  # a prefix of each row: the totals never fall
    hit = solved & reached
    first = np.where(hit.any(1), hit.argmax(1), -1)
    last = np.where(first >= 0, first, reached.sum(1) - 1)  # the last sample paid for
    spent = np.where(last >= 0, np.take_along_axis(total, np.maximum(last, 0)[:, None], 1)[:, 0], shared)
    return first, spent
