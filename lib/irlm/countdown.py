"""Countdown: reach a target from a few numbers, one arithmetic step at a time (chapter 7).

A :class:`Puzzle` is a multiset of small numbers and a target, e.g. ``4 7 8 8 -> 24``
(the Game of 24 when the target is 24). A step ``a op b = c`` with ``op`` in ``+ - * /``
takes ``a`` and ``b`` out of the multiset and puts ``c`` in; subtraction must not go
negative (write the larger number first) and division must be exact. A puzzle is solved
exactly when the multiset has shrunk to ``(target,)``: every number is used once.

Reasoning is then a search over a small tree whose nodes (:class:`State`) have an exact
value :math:`V^*(s) = 1[\\text{the target is still reachable from } s]`
(:func:`state_value`), the label a process reward model learns. Text format, one line,
digits as single tokens. Each step is followed by the numbers left, in brackets, so that
a small model need not track them; non-final steps end in ``","``, the last one in the
end-of-text token::

    Q: 4 7 8 8 -> 24
    A: 8-4=4 [4 7 8], 7-4=3 [3 8], 8*3=24 [24]

A language model proposes only ``a op b``; the environment writes ``=c [numbers left]``
(:meth:`State.after_text`), as a tool would.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from irlm.tasks import Splits

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

OPS = ("+", "-", "*", "/")
SEP = ", "
MAX_NUMBERS = 6
LEVELS = {"easy": 100.0, "medium": 300.0, "hard": math.inf}  # level: the largest difficulty it holds

_STEP = re.compile(r"(\d+)([-+*/])(\d+)=(\d+)(?:\s*\[[\d ]*\])?")


def _result(a: int, op: str, b: int) -> int | None:
    """``a op b`` if that is a legal step's result: non-negative, exact for division."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a >= b else None
    if op == "*":
        return a * b
    return a // b if op == "/" and b != 0 and a % b == 0 else None


@dataclass(frozen=True, order=True)
class Step:
    """One step ``a op b = c``, written ``"a op b=c"`` without spaces, e.g. ``"8*3=24"``."""

    a: int
    op: str
    b: int
    c: int

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")

    @property
    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}={self.c}"

    @classmethod
    def parse(cls, text: str) -> Step:
        """Inverse of :attr:`text`; a ``[numbers left]`` suffix, a trailing ``","`` and
        surrounding spaces are ignored."""
        m = _STEP.fullmatch(text.strip().removesuffix(",").strip())
        if m is None:
            raise ValueError(f"not a step of the form 'a+b=c': {text!r}")
        return cls(int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))


@dataclass(frozen=True)
class Puzzle:
    """Numbers (each >= 1, between 2 and ``MAX_NUMBERS`` of them) and a target >= 0."""

    numbers: tuple[int, ...]
    target: int

    def __post_init__(self) -> None:
        if not isinstance(self.numbers, tuple) or not 2 <= len(self.numbers) <= MAX_NUMBERS:
            raise ValueError(f"numbers must be a tuple of 2 to {MAX_NUMBERS} ints, got {self.numbers!r}")
        if any(not isinstance(x, int) or x < 1 for x in self.numbers):
            raise ValueError(f"numbers must be ints >= 1, got {self.numbers!r}")
        if not isinstance(self.target, int) or self.target < 0:
            raise ValueError(f"target must be an int >= 0, got {self.target!r}")

    @property
    def text(self) -> str:
        return " ".join(map(str, self.numbers)) + f" -> {self.target}"

    @property
    def prompt(self) -> str:
        return f"Q: {self.text}\nA: "

    @classmethod
    def parse(cls, text: str) -> Puzzle:
        """Inverse of :attr:`text`, e.g. ``Puzzle.parse("4 7 8 8 -> 24")``."""
        m = re.fullmatch(r"\s*((?:\d+\s+)*\d+)\s*->\s*(\d+)\s*", text)
        if m is None:
            raise ValueError(f"not a puzzle of the form '4 7 8 8 -> 24': {text!r}")
        return cls(tuple(int(x) for x in m.group(1).split()), int(m.group(2)))


def _after(numbers: tuple[int, ...], step: Step) -> tuple[int, ...] | None:
    """The sorted multiset after ``step``, or ``None`` if the step is illegal on ``numbers``."""
    if _result(step.a, step.op, step.b) != step.c:
        return None
    rest = list(numbers)
    for x in (step.a, step.b):
        if x not in rest:
            return None
        rest.remove(x)
    return tuple(sorted([*rest, step.c]))


@dataclass(frozen=True)
class State:
    """A puzzle and the steps taken so far (each one legal, else ``ValueError``)."""

    puzzle: Puzzle
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        self.remaining  # noqa: B018  (replays the steps, raising on an illegal one)

    @cached_property
    def remaining(self) -> tuple[int, ...]:
        """The multiset of numbers left, sorted."""
        return _numbers_left(self.puzzle.numbers, self.steps)

    @property
    def is_terminal(self) -> bool:
        return len(self.remaining) == 1

    @property
    def is_solved(self) -> bool:
        return self.remaining == (self.puzzle.target,)

    @cached_property
    def response(self) -> str:
        """The solution so far, each step followed by the numbers left; unless it is
        finished it ends in ``", "``, ready for the next step."""
        numbers, parts = tuple(sorted(self.puzzle.numbers)), []
        for step in self.steps:  # legal: the constructor checked them
            numbers = _after(numbers, step)
            parts.append(f"{step.text} {_left(numbers)}")
        text = SEP.join(parts)
        return text + SEP if self.steps and not self.is_terminal else text

    def after_text(self, step: Step) -> str:
        """What the environment writes after a model's ``"a op b"``: ``"=c [numbers left]"``,
        then ``", "`` unless the step ends the solution."""
        after = apply_step(self, step)
        return f"={step.c} {_left(after.remaining)}" + ("" if after.is_terminal else SEP)

    @cached_property
    def text(self) -> str:
        """Prompt and solution so far: what a language model continues, one step at a time."""
        return self.puzzle.prompt + self.response


@lru_cache(maxsize=1 << 18)
def _numbers_left(numbers: tuple[int, ...], steps: tuple[Step, ...]) -> tuple[int, ...]:
    """The sorted multiset after ``steps`` from ``numbers``; ``ValueError`` at an illegal step.
    Memoised on the prefix, so a state one step past a known one costs one step."""
    if not steps:
        return tuple(sorted(numbers))
    before = _numbers_left(numbers, steps[:-1])
    after = _after(before, steps[-1])
    if after is None:
        raise ValueError(f"illegal step {steps[-1].text!r} with numbers {before}")
    return after


def _left(numbers: tuple[int, ...]) -> str:
    return "[" + " ".join(map(str, numbers)) + "]"


def parse_proposal(state: State, text: str) -> Step | None:
    """The step a model's ``"a op b"`` (the text before ``=``) proposes, with the result
    the environment computes; ``None`` unless it parses and is legal in ``state``."""
    m = re.fullmatch(r"\s*(\d+)([-+*/])(\d+)\s*=?\s*", text)
    if m is None:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    c = _result(a, op, b)
    return Step(a, op, b, c) if c is not None and check_step(state, Step(a, op, b, c)) else None


def check_step(state: State, step: Step) -> bool:
    """Is ``step`` legal: both operands left, arithmetic right, exact division, no negatives?"""
    return _after(state.remaining, step) is not None


def apply_step(state: State, step: Step) -> State:
    """The state after a legal ``step``; ``ValueError`` for an illegal one."""
    if not check_step(state, step):
        raise ValueError(f"illegal step {step.text!r} with remaining numbers {state.remaining}")
    return State(state.puzzle, (*state.steps, step))


def parse_step(state: State, text: str) -> Step | None:
    """The step ``text`` writes (e.g. ``"8*3=24,"``) if it parses and is legal in ``state``, else ``None``."""
    try:
        step = Step.parse(text)
    except ValueError:
        return None
    return step if check_step(state, step) else None


@cache
def _legal(numbers: tuple[int, ...]) -> tuple[Step, ...]:
    found = set()
    for i, j in combinations(range(len(numbers)), 2):
        x, y = sorted((numbers[i], numbers[j]))
        for a, op, b in ((y, "+", x), (y, "-", x), (y, "*", x), (y, "/", x), (x, "/", y)):
            c = _result(a, op, b)
            if c is not None:
                found.add(Step(a, op, b, c))
    return tuple(sorted(found))


def legal_steps(state: State) -> list[Step]:
    """Every legal next step, once each, sorted; ``+``, ``*`` and ``-`` write the larger operand first."""
    return list(_legal(state.remaining))


@cache
def _reachable(numbers: tuple[int, ...]) -> frozenset[int]:
    """Every value that using all of ``numbers`` (sorted) exactly once can produce."""
    if len(numbers) == 1:
        return frozenset(numbers)
    return frozenset().union(*(_reachable(_after(numbers, s)) for s in _legal(numbers)))


def solvable(numbers: Iterable[int], target: int) -> bool:
    """Can ``numbers``, each used once, make ``target``? Brute force, memoised on the sorted multiset."""
    return target in _reachable(tuple(sorted(numbers)))


def state_value(state: State) -> float:
    """The exact value :math:`V^*(s)`: 1.0 if the target is still reachable from ``state``, else 0.0."""
    return float(solvable(state.remaining, state.puzzle.target))


@cache
def _uniform_success(numbers: tuple[int, ...], target: int) -> float:
    if len(numbers) == 1 or target not in _reachable(numbers):
        return float(numbers == (target,))
    steps = _legal(numbers)
    return sum(_uniform_success(_after(numbers, s), target) for s in steps) / len(steps)


def uniform_success(state: State) -> float:
    """:math:`V^{\\text{unif}}(s)`: the probability that legal steps drawn uniformly at random solve it,
    :math:`V(s) = \\frac{1}{|A(s)|} \\sum_{a \\in A(s)} V(s \\cdot a)` with :math:`V = 1[\\text{solved}]` at the end."""
    return _uniform_success(state.remaining, state.puzzle.target)


def difficulty(puzzle: Puzzle) -> float:
    """The expected number of attempts a solver picking uniformly among legal steps needs,
    :math:`1 / V^{\\text{unif}}(s_0)` (the mean of a geometric distribution): about 7 to 1000 for
    four numbers up to 13 (the default splits hold roughly a third each below 100, 100 to 300 and
    above 300: :data:`LEVELS`); infinite if the puzzle has no solution."""
    p = uniform_success(State(puzzle))
    return 1.0 / p if p > 0 else math.inf


def level(puzzle: Puzzle) -> str:
    """``"easy"``, ``"medium"`` or ``"hard"``: the first of :data:`LEVELS` whose bound holds the difficulty."""
    d = difficulty(puzzle)
    return next(name for name, bound in LEVELS.items() if d <= bound)


def by_level(puzzles: Iterable[Puzzle]) -> dict[str, list[Puzzle]]:
    """Puzzles grouped into the difficulty buckets of :data:`LEVELS`, in their given order."""
    out: dict[str, list[Puzzle]] = {name: [] for name in LEVELS}
    for p in puzzles:
        out[level(p)].append(p)
    return out


def _walk(puzzle: Puzzle, choose: Callable[[list[Step]], Step]) -> list[Step] | None:
    numbers, target, steps = tuple(sorted(puzzle.numbers)), puzzle.target, []
    if target not in _reachable(numbers):
        return None
    while len(numbers) > 1:
        step = choose(_still_reachable(numbers, target))
        steps.append(step)
        numbers = _after(numbers, step)
    return steps


@cache
def _still_reachable(numbers: tuple[int, ...], target: int) -> list[Step]:
    """The legal steps on ``numbers`` after which ``target`` can still be made, in :func:`legal_steps` order."""
    return [s for s in _legal(numbers) if target in _reachable(_after(numbers, s))]


def solve(puzzle: Puzzle) -> list[Step] | None:
    """The demonstrator: the first solution in :func:`legal_steps` order, or ``None`` if there is none."""
    return _walk(puzzle, lambda good: good[0])


def random_solution(puzzle: Puzzle, rng: random.Random) -> list[Step] | None:
    """A random solution: each step uniform among the legal steps that keep the target reachable."""
    return _walk(puzzle, rng.choice)


def response_text(puzzle: Puzzle, steps: Iterable[Step]) -> str:
    """A full solution as text, e.g. ``"8-4=4 [4 7 8], 7-4=3 [3 8], 8*3=24 [24]"``."""
    return State(puzzle, tuple(steps)).response


def split_steps(response: str) -> list[str]:
    """Steps of a response: the pieces between commas, stripped."""
    return [s.strip() for s in response.split(",") if s.strip()]


def prefixes(state: State) -> list[State]:
    """The states a trajectory passed through after each of its steps, ``state`` last."""
    return [State(state.puzzle, state.steps[:i]) for i in range(1, len(state.steps) + 1)]


def partial_states(puzzle: Puzzle) -> list[State]:
    """Every unfinished state a legal solution of ``puzzle`` can pass through after one or
    more steps, depth first in the order of :func:`legal_steps`: all the partial solutions a
    process reward model could be asked about, on-policy or not."""
    out, todo = [], [State(puzzle)]
    while todo:
        state = todo.pop()
        for step in reversed(legal_steps(state)):
            child = apply_step(state, step)
            if not child.is_terminal:
                out.append(child)
                todo.append(child)
    return out


def state_features(state: State) -> list[int]:
    """A state as numbers, not tokens: the target, the steps taken, the numbers left (sorted,
    padded with 0 to :data:`MAX_NUMBERS`) and the target minus each of them. What a value
    model reads when it does not read text."""
    left = list(state.remaining) + [0] * (MAX_NUMBERS - len(state.remaining))
    target = state.puzzle.target
    return [target, len(state.steps), *left, *(target - x for x in left)]


def fit_value_model(
    states: Sequence[State], labels: Sequence[bool], seed: int = 0, threads: int = 1
) -> HistGradientBoostingClassifier:
    """A value on numbers: gradient-boosted trees (scikit-learn's
    ``HistGradientBoostingClassifier``, 300 iterations, seeded by ``seed``) fitted to predict
    ``labels``, e.g. the exact :math:`V^*(s)` of :func:`state_value`, from
    :func:`state_features`. Its probability of the label True is a learned
    :math:`\\hat V(s) \\approx P(V^*(s) = 1 \\mid \\text{numbers left, target})`: a process reward
    model that reads numbers instead of tokens (chapters 7 and 10; :func:`numbers_value`).
    It fits on ``threads`` OpenMP threads; the trees do not depend on it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    if len(states) == 0 or len(states) != len(labels) or threads < 1:
        raise ValueError(
            "states and labels must be non-empty and of equal length and threads >= 1, "
            f"got {len(states)} states, {len(labels)} labels and threads={threads}"
        )
    features = np.array([state_features(s) for s in states])
    with threadpool_limits(limits=threads):  # one by default: two were 4.5x slower under PASSIVE waiting
        return HistGradientBoostingClassifier(max_iter=300, random_state=seed).fit(features, labels)


def numbers_value(value_model, states: Sequence[State]) -> np.ndarray:
    """:math:`\\hat V(s)` of a :func:`fit_value_model` for each of ``states``, in one batch."""
    return value_model.predict_proba(np.array([state_features(s) for s in states]))[:, 1]


def step_labels(puzzle: Puzzle, response: str) -> list[bool]:
    """Process reward labels: step ``i`` is good iff it and every earlier step are legal and the
    target is still reachable after it, i.e. :math:`V^*(s_{i+1}) = 1`."""
    state, labels = State(puzzle), []
    for text in split_steps(response):
        step = parse_step(state, text) if state is not None else None
        state = apply_step(state, step) if step is not None else None
        labels.append(state is not None and state_value(state) == 1.0)
    return labels


def is_correct(puzzle: Puzzle, response: str) -> bool:
    """Outcome reward: do the response's steps, all legal, leave exactly ``(target,)``?"""
    state = State(puzzle)
    for text in split_steps(response):
        step = parse_step(state, text)
        if step is None:
            return False
        state = apply_step(state, step)
    return state.is_solved


# --- puzzle sets -------------------------------------------------------------------------


def make_puzzles(
    n: int,
    seed: int,
    n_numbers: int = 4,
    max_number: int = 13,
    target: int | tuple[int, int] = 24,
    exclude: Iterable[Puzzle] = (),
) -> list[Puzzle]:
    """``n`` distinct solvable puzzles drawn from ``seed``, none in ``exclude``.

    Numbers are uniform in ``1..max_number`` (sorted). An int ``target`` is every puzzle's
    target; a pair ``(lo, hi)`` draws it uniformly from the values in ``[lo, hi]`` the
    numbers can reach.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 2 <= n_numbers <= MAX_NUMBERS:
        raise ValueError(f"n_numbers must lie in [2, {MAX_NUMBERS}], got {n_numbers}")
    if max_number < 1:
        raise ValueError(f"max_number must be >= 1, got {max_number}")
    lo, hi = (target, target) if isinstance(target, int) else target
    if not 0 <= lo <= hi:
        raise ValueError(f"target must be an int >= 0 or a pair (lo, hi) with 0 <= lo <= hi, got {target!r}")
    rng, seen, out = random.Random(seed), set(exclude), []
    for _ in range(100 * n + 1000):
        if len(out) == n:
            return out
        numbers = tuple(sorted(rng.randint(1, max_number) for _ in range(n_numbers)))
        targets = sorted(t for t in _reachable(numbers) if lo <= t <= hi)
        if not targets:
            continue
        puzzle = Puzzle(numbers, rng.choice(targets))
        if puzzle not in seen:
            seen.add(puzzle)
            out.append(puzzle)
    raise ValueError(f"could not draw {n} distinct solvable puzzles with n_numbers={n_numbers}, target={target}")


def make_splits(
    seed: int = 0,
    n_train: int = 2000,
    n_validation: int = 500,
    n_test: int = 500,
    n_numbers: int = 4,
    max_number: int = 13,
    target: int | tuple[int, int] = (10, 99),
) -> Splits[Puzzle]:
    """Disjoint train / validation / test puzzles drawn from ``seed``; :func:`by_level` grades them.

    Targets are drawn from 10 to 99 by default: the Game of 24 alone has only 1362 solvable
    puzzles of four numbers up to 13."""
    ps = make_puzzles(n_train + n_validation + n_test, seed, n_numbers, max_number, target)
    return Splits(ps[:n_train], ps[n_train : n_train + n_validation], ps[n_train + n_validation :])
