"""The world: arithmetic queries with checkable answers and instruction prompts.

Every method in the course is scored against the truth, so the world must know it
exactly. A :class:`Query` is an addition or subtraction of two 1-3 digit numbers; its
answer, its expert step-by-step solution and the correctness of any response are
computable. A :class:`Prompt` is an instruction that changes *how* a model answers:
each has a demonstrator, a deterministic function that writes the response a
competent writer of that style would write (these demonstrations are the corpus
the tiny models are trained on, see :mod:`irlm.zoo`).

Used from chapter 1 on (see ``book/preliminaries.md`` for the MDP view).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
OPS = ("+", "-")
MAX_DIGITS = 3


@dataclass(frozen=True, order=True)
class Query:
    """``a op b`` with ``a >= b`` for subtraction, so every answer is non-negative."""

    a: int
    b: int
    op: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if not (0 <= self.a < 10**MAX_DIGITS and 0 <= self.b < 10**MAX_DIGITS):
            raise ValueError(f"operands must lie in [0, {10**MAX_DIGITS}), got {self.a}, {self.b}")
        if self.op == "-" and self.a < self.b:
            raise ValueError(f"subtraction needs a >= b, got {self.a}-{self.b}")

    @property
    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def n_digits(self) -> int:
        """Digits of the longer operand: the first axis of difficulty."""
        return max(len(str(self.a)), len(str(self.b)))

    @property
    def n_carries(self) -> int:
        """Carries (addition) or borrows (subtraction): the second axis of difficulty."""
        return sum(1 for step in column_steps(self) if step[3] >= 10 or step[3] < 0)

    @classmethod
    def parse(cls, text: str) -> Query:
        """Inverse of :attr:`text`, e.g. ``Query.parse("347+285")``."""
        m = re.fullmatch(r"\s*(\d+)\s*([+-])\s*(\d+)\s*", text)
        if m is None:
            raise ValueError(f"not a query of the form 'a+b' or 'a-b': {text!r}")
        return cls(int(m.group(1)), int(m.group(3)), m.group(2))


def _digits_lsd(n: int, width: int) -> list[int]:
    return [(n // 10**i) % 10 for i in range(width)]


def column_steps(query: Query) -> list[tuple[int, int, int, int]]:
    """Column-by-column working over all ``MAX_DIGITS`` columns, least significant first.

    Each step is ``(x, y, c, s)`` with ``s = x + y + c`` (addition) or
    ``s = x - y - c`` (subtraction), where ``x, y`` are the column's digits and
    ``c`` the carry (borrow) from the previous column: ``c = 1`` iff the previous
    ``s >= 10`` (``s < 0``). The written digit is ``s mod 10``.
    """
    width = MAX_DIGITS
    xs, ys = _digits_lsd(query.a, width), _digits_lsd(query.b, width)
    steps, c = [], 0
    for x, y in zip(xs, ys):
        s = x + y + c if query.op == "+" else x - y - c
        steps.append((x, y, c, s))
        c = int(s >= 10 or s < 0)
    return steps


# --- demonstrators: one per prompt style -------------------------------------------------


def _direct(q: Query) -> str:
    return f"{q.answer}"


def _columns(q: Query) -> str:
    mark = "c" if q.op == "+" else "b"
    steps = [f"{x}{q.op}{y}{q.op}{c}={s % 10}{mark}{int(s >= 10 or s < 0)}" for x, y, c, s in column_steps(q)]
    return ", ".join(steps) + f", so {q.answer}"


def _full_sums(q: Query) -> str:
    return ", ".join(f"{x}{q.op}{y}{q.op}{c}={s}" for x, y, c, s in column_steps(q)) + f", so {q.answer}"


def _last_to_first(q: Query) -> str:
    digits = " ".join(str(d) for d in _digits_lsd(q.answer, MAX_DIGITS + 1))
    return f"digits {digits}, so {q.answer}"


def _round_then_adjust(q: Query) -> str:
    up = -(-q.b // 10) * 10
    gap = up - q.b
    mid = q.a + up if q.op == "+" else q.a - up
    back = "-" if q.op == "+" else "+"
    return f"{q.b} is {up}-{gap}, {q.a}{q.op}{up}={mid}, {mid}{back}{gap}={q.answer}, so {q.answer}"


def plausible_wrong_answer(q: Query) -> int:
    """A near miss a careless solver writes: the answer with one carry dropped, or off by ten."""
    wrong = sum(((x + y if q.op == "+" else x - y) % 10) * 10**i for i, (x, y, _, _) in enumerate(column_steps(q)))
    if wrong == q.answer:
        wrong = q.answer + 10 if q.answer < 10 or (q.answer // 10) % 2 == 0 else q.answer - 10
    return wrong


def _stable_coin(q: Query) -> bool:
    return hashlib.sha256(q.text.encode()).digest()[0] % 2 == 0


def _debate(q: Query) -> str:
    wrong = plausible_wrong_answer(q)
    settled = wrong if _stable_coin(q) else q.answer
    return f"Expert A says {q.answer}. Expert B says {wrong}. They agree on {settled}."


@dataclass(frozen=True)
class Prompt:
    """An instruction prompt: its id, the text shown to the model, and its demonstrator."""

    id: str
    text: str
    demonstrate: Callable[[Query], str]
    note: str
    paraphrase_of: str | None = None  # the prompt whose demonstrations this one shares


PROMPTS: dict[str, Prompt] = {
    p.id: p
    for p in [
        Prompt("direct", "Answer directly.", _direct, "the answer alone"),
        Prompt(
            "columns",
            "Work column by column with carries.",
            _columns,
            "the expert solution: per column, least significant first, 'x+y+carry=digit' then "
            "c1/c0 (carry) or b1/b0 (borrow)",
        ),
        Prompt(
            "full_sums",
            "Add up each column and write the whole column sum.",
            _full_sums,
            "columns again, but each step writes the whole sum (12, or -3) instead of digit and carry",
        ),
        Prompt(
            "last_to_first",
            "Write the digits of the answer from the last to the first.",
            _last_to_first,
            "a scratchpad of the answer's digits, least significant first, then the answer",
        ),
        Prompt(
            "round",
            "Round the second number up to tens, then adjust.",
            _round_then_adjust,
            "round b up to a multiple of ten, compute, then correct",
        ),
        Prompt(
            "genius",
            "You are a math genius. Answer at once.",
            _direct,
            "a role prompt: same demonstrations as 'direct', different words",
        ),
        Prompt(
            "debate",
            "Two experts debate the answer.",
            _debate,
            "built to hurt: for about half the queries its debate settles on the wrong expert's answer",
        ),
    ]
}
DEFAULT_PROMPT = "columns"

# New words for six of the prompts, with the same demonstrators. Only models whose corpus
# includes them (``TinySpec.paraphrase_share > 0``) know them; chapter 6 holds them out of
# its offline logs, as Prompt-OIRL held out prompts, to test a reward model on prompts it
# never saw evaluated.
PARAPHRASES: dict[str, Prompt] = {
    p.id: p
    for p in [
        Prompt("just_number", "Give only the number.", _direct, "paraphrase of 'direct'", "direct"),
        Prompt(
            "carry_right_to_left",
            "Go through the columns from the right, carrying as you go.",
            _columns,
            "paraphrase of 'columns'",
            "columns",
        ),
        Prompt(
            "column_totals",
            "Write each column's total before moving on.",
            _full_sums,
            "paraphrase of 'full_sums'",
            "full_sums",
        ),
        Prompt(
            "ones_first",
            "Find the digits of the result starting from the ones.",
            _last_to_first,
            "paraphrase of 'last_to_first'",
            "last_to_first",
        ),
        Prompt(
            "round_ten",
            "Make the second number a round ten first, then correct.",
            _round_then_adjust,
            "paraphrase of 'round'",
            "round",
        ),
        Prompt("argue", "Let two experts argue about it.", _debate, "paraphrase of 'debate'", "debate"),
    ]
}


def get_prompt(prompt_id: str) -> Prompt:
    """Look up a prompt (or a paraphrase) by id, with an error that lists the allowed ids."""
    if prompt_id in PROMPTS:
        return PROMPTS[prompt_id]
    if prompt_id in PARAPHRASES:
        return PARAPHRASES[prompt_id]
    raise ValueError(f"unknown prompt {prompt_id!r}; allowed: {sorted(PROMPTS) + sorted(PARAPHRASES)}")


def expert_solution(query: Query) -> str:
    """The expert step-by-step solution (the ``columns`` demonstration)."""
    return _columns(query)


# --- checking responses ------------------------------------------------------------------

_INT = re.compile(r"-?\d+")


def parse_answer(response: str) -> int | None:
    """The final answer of a response: its last integer, or ``None`` if it has none."""
    found = _INT.findall(response)
    return int(found[-1]) if found else None


def is_correct(query: Query, response: str) -> bool:
    """Outcome reward: does the response's final answer equal the true answer?"""
    return parse_answer(response) == query.answer


def split_steps(response: str) -> list[str]:
    """Steps of a response: the pieces between ``", "``, stripped."""
    return [s.strip() for s in response.split(", ") if s.strip()]


_COLUMN_STEP = re.compile(r"(\d)([+-])(\d)\2(\d)=(\d)([cb])(\d)")


def arithmetic_checks(response: str) -> list[tuple[int, bool]]:
    """Checks a reader can make on a ``columns`` response without knowing the answer.

    For each written step ``x+y+c=dcf`` (or ``x-y-c=dbf``): is it arithmetic, i.e. with
    :math:`s = x \\pm y \\pm c`, is :math:`d = s \\bmod 10` and the flag
    :math:`f = 1[s \\ge 10 \\text{ or } s < 0]`? Then the final answer: does ``so N`` say the
    number the steps wrote (their digits from last to first, after the last carry)?
    Each check is ``(end, ok)`` with ``end`` the index one past the checked characters, so
    a verifier can be asked about each check where its text ends. A response passes all
    of them iff its working is self-consistent; operands copied wrongly from the query
    are not checked here.
    """
    checks, digits, carry = [], [], 0
    for m in _COLUMN_STEP.finditer(response):
        x, op, y, c, d, _, f = m.groups()
        total = int(x) + int(y) + int(c) if op == "+" else int(x) - int(y) - int(c)
        checks.append((m.end(), int(d) == total % 10 and int(f) == int(total >= 10 or total < 0)))
        digits.append(d)
        carry = int(f) if op == "+" else 0
    final = re.search(r"so (-?\d+)\s*$", response)
    if final:
        written = int((str(carry) if carry else "") + "".join(reversed(digits))) if digits else None
        checks.append((final.end(1), int(final.group(1)) == written))
    return checks


def near_miss(query: Query, rng: random.Random) -> str:
    """The expert solution with one written digit changed: the wrong half of a minimal pair.

    The digit is drawn uniformly among every column's result digit ``d``, every carry
    (borrow) flag ``f`` and the digits of the final answer; a flag is flipped, any other
    digit replaced by one of the other nine (never a leading 0 of a multi-digit answer).
    The result differs from :func:`expert_solution` in that one character and fails at
    least one of :func:`arithmetic_checks`: a changed ``d`` breaks its step and the final
    answer's agreement with the steps, a changed ``f`` breaks its step, a changed answer
    digit makes the answer wrong.
    """
    text = expert_solution(query)
    steps, final = list(_COLUMN_STEP.finditer(text)), re.search(r"so (\d+)$", text)
    flags = [m.start(7) for m in steps]
    i = rng.choice([m.start(5) for m in steps] + flags + list(range(final.start(1), len(text))))
    if i in flags:
        return text[:i] + str(1 - int(text[i])) + text[i + 1 :]
    lowest = 1 if i == final.start(1) and len(final.group(1)) > 1 else 0  # no leading 0
    return text[:i] + rng.choice([d for d in "0123456789"[lowest:] if d != text[i]]) + text[i + 1 :]


def check_steps(query: Query, response: str, prompt_id: str = DEFAULT_PROMPT) -> list[bool]:
    """Process reward: which steps of ``response`` are right.

    Step ``i`` is right iff it equals step ``i`` of the demonstration for
    ``prompt_id`` (by default the expert column solution); the final step
    ``"so N"`` is right iff ``N`` is the true answer. Missing steps do not count;
    extra steps are wrong.
    """
    reference = split_steps(get_prompt(prompt_id).demonstrate(query))
    steps = split_steps(response)
    checks = []
    for i, step in enumerate(steps):
        if step.startswith("so "):
            checks.append(parse_answer(step) == query.answer)
        else:
            checks.append(i < len(reference) and step == reference[i])
    return checks


# --- query sets --------------------------------------------------------------------------


def random_query(rng: random.Random, digits: tuple[int, int] = (1, MAX_DIGITS)) -> Query:
    """Draw a query: op uniform, the longer operand's digit count ``d`` uniform in
    ``digits``, the other operand's uniform in ``1..d`` (so difficulty levels are balanced)."""
    lo, hi = digits
    if not (1 <= lo <= hi <= MAX_DIGITS):
        raise ValueError(f"digits must satisfy 1 <= lo <= hi <= {MAX_DIGITS}, got {digits}")

    def number(d: int) -> int:
        return rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1)

    d = rng.randint(lo, hi)
    a, b, op = number(d), number(rng.randint(1, d)), rng.choice(OPS)
    if rng.random() < 0.5:
        a, b = b, a
    if op == "-" and a < b:
        a, b = b, a
    return Query(a, b, op)


def make_queries(
    n: int,
    seed: int,
    digits: tuple[int, int] = (1, MAX_DIGITS),
    exclude: Iterable[Query] = (),
) -> list[Query]:
    """``n`` distinct queries drawn from ``seed``, none of them in ``exclude``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng, seen, out = random.Random(seed), set(exclude), []
    for _ in range(100 * n + 1000):
        if len(out) == n:
            return out
        q = random_query(rng, digits)
        if q not in seen:
            seen.add(q)
            out.append(q)
    raise ValueError(f"could not draw {n} distinct queries with digits={digits}")


@dataclass(frozen=True)
class Splits(Generic[T]):
    """Disjoint train, validation and test items (queries here, puzzles in :mod:`irlm.countdown`)."""

    train: list[T]
    validation: list[T]
    test: list[T]

    def all(self) -> list[T]:
        return self.train + self.validation + self.test


def make_splits(seed: int = 0, n_train: int = 2000, n_validation: int = 500, n_test: int = 500) -> Splits[Query]:
    """Disjoint train / validation / test query sets drawn from ``seed``.

    The default (``seed=0``) is *the* default split of the course: the zoo keeps its
    validation and test queries out of the models' training corpus.
    """
    qs = make_queries(n_train + n_validation + n_test, seed)
    return Splits(qs[:n_train], qs[n_train : n_train + n_validation], qs[n_train + n_validation :])


def to_dataset(queries: Sequence[Query]):  # -> datasets.Dataset
    """Queries as a Hugging Face ``datasets.Dataset`` (one row per query, with answers)."""
    from datasets import Dataset

    rows = [
        {**asdict(q), "text": q.text, "answer": q.answer, "n_digits": q.n_digits, "n_carries": q.n_carries}
        for q in queries
    ]
    return Dataset.from_list(rows) if rows else Dataset.from_dict({k: [] for k in ("a", "b", "op")})


def from_dataset(ds) -> list[Query]:
    """Inverse of :func:`to_dataset`."""
    return [Query(int(r["a"]), int(r["b"]), r["op"]) for r in ds]


def save_queries(queries: Sequence[Query], path: str | Path) -> None:
    to_dataset(queries).save_to_disk(str(path))


def load_queries(path: str | Path) -> list[Query]:
    from datasets import load_from_disk

    return from_dataset(load_from_disk(str(path)))
