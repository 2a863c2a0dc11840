"""The zoo: tiny language models trained from scratch on the world, cached on disk.

``load("tiny-arith")`` returns a real ``transformers`` GPT-2 causal LM and a real
``PreTrainedTokenizerFast`` (byte-level BPE with single-digit tokens, built with the
``tokenizers`` library). The first call trains it on a corpus of demonstrations of
every prompt style (:mod:`irlm.tasks`) and saves it with ``save_pretrained``
(safetensors) under ``$IRLM_CACHE`` (default ``~/.cache/irlm``); later calls load the
cache. Any other name is passed to ``from_pretrained`` as a Hugging Face model id or
local path, so the chapters run unchanged on a real model.

Pre-training is plain next-token prediction, :math:`\\min_\\theta -\\sum_t \\log
\\pi_\\theta(w_t \\mid w_{<t})` over the corpus: behaviour cloning of the demonstrators
(``book/preliminaries.md``). The budget is small on purpose: the model must be useful
but imperfect, leaving room for every later method.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from irlm import countdown
from irlm.adapters import PLAIN_FORMAT, PlainAdapter
from irlm.sft import behaviour_clone, deterministic
from irlm.tasks import MAX_DIGITS, OPS, PARAPHRASES, PROMPTS, Query, get_prompt, make_splits, random_query

PAD, EOS = "<|pad|>", "<|endoftext|>"


@dataclass(frozen=True)
class TinySpec:
    """Everything that determines a tiny model; its hash names the cache entry."""

    name: str
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    n_positions: int = 128
    vocab_size: int = 384
    steps: int = 1500
    batch_size: int = 32
    lr: float = 5e-3
    warmup: int = 50
    weight_decay: float = 0.05
    seed: int = 0
    threads: int = 2
    # share of each prompt style in the corpus: the expert style is the most common,
    # as careful worked solutions are in real pre-training text; every style is present
    mix: tuple[tuple[str, float], ...] = (
        ("columns", 0.25),
        ("full_sums", 0.15),
        ("last_to_first", 0.2),
        ("direct", 0.12),
        ("round", 0.08),
        ("genius", 0.1),
        ("debate", 0.1),
    )
    # per kind of query, a mix that replaces ``mix`` for those queries: a key is an operation
    # ("+", mix), or an operation and operand length ("+ long": a 3-digit operand, "+ short":
    # none; see ``query_kind``), which wins over the operation's key
    mix_by_op: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    # share of demonstrations whose prompt is reworded by one of its paraphrases
    paraphrase_share: float = 0.0
    # the world it learns: "arith" (irlm.tasks, in the styles of ``mix``) or "countdown"
    # (irlm.countdown: random solution traces, no prompt styles)
    task: str = "arith"
    version: int = 2  # 2: trained on packed rows through irlm.tinygpt

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _shifted_mix(more: str, *less: str) -> tuple[tuple[str, float], ...]:
    """The default mix with ``more`` at 0.5 and each of ``less`` at 0.02."""
    share = {**dict(TinySpec.mix), more: 0.5, **dict.fromkeys(less, 0.02)}
    return tuple(share.items())


MIX_KEYS = (*OPS, *(f"{op} {size}" for op in OPS for size in ("short", "long")))


def query_kind(query: Query) -> str:
    """The key of ``TinySpec.mix_by_op`` that is most specific for ``query``: its operation
    and operand length, "+ long" if an operand has ``MAX_DIGITS`` digits, else "+ short"."""
    return f"{query.op} {'long' if query.n_digits == MAX_DIGITS else 'short'}"


ZOO: dict[str, TinySpec] = {
    "tiny-arith": TinySpec("tiny-arith"),
    # Chapter 6's model. Its corpus is uneven, as real pre-training text is: additions were
    # mostly written column by column with carries, subtractions mostly with whole column
    # sums; and a fifth of every style's demonstrations use reworded prompts (PARAPHRASES).
    # So which prompt works best depends on the query, and there are prompts to hold out.
    "tiny-arith-ops": TinySpec(
        "tiny-arith-ops",
        mix_by_op=(("+", _shifted_mix("columns", "full_sums")), ("-", _shifted_mix("full_sums", "columns"))),
        paraphrase_share=0.2,
        steps=2500,  # the richer corpus needs more steps: at 1500 the final loss is 0.24, not 0.14
    ),
    # Chapter 6's model since its science pass: as tiny-arith-ops, but the dominant style also
    # depends on operand length. Long additions were mostly written column by column, long
    # subtractions with whole column sums, and short queries of both operations with the
    # answer's digits from the last (``last_to_first``); so neither the operation nor the
    # length alone tells which prompt is best.
    "tiny-arith-oplen": TinySpec(
        "tiny-arith-oplen",
        mix_by_op=(
            ("+ long", _shifted_mix("columns", "full_sums", "last_to_first")),
            ("- long", _shifted_mix("full_sums", "columns", "last_to_first")),
            ("+ short", _shifted_mix("last_to_first", "columns", "full_sums")),
            ("- short", _shifted_mix("last_to_first", "columns", "full_sums")),
        ),
        paraphrase_share=0.2,
        steps=2500,
    ),
    # Chapter 7's model: Countdown solution traces whose every step keeps the target
    # reachable; an imperfect imitator proposes plausible steps and sometimes dead ends.
    "tiny-countdown": TinySpec("tiny-countdown", task="countdown", steps=3000),
}
TASKS = ("arith", "countdown")


def cache_root() -> Path:
    """``$IRLM_CACHE`` or ``~/.cache/irlm``."""
    return Path(os.environ.get("IRLM_CACHE", Path.home() / ".cache" / "irlm")).expanduser()


# --- data and tokenizer ---------------------------------------------------------------------


def corpus(n: int, seed: int, spec: TinySpec | None = None) -> list[tuple[str, str]]:
    """``n`` (prompt, response) demonstrations: random queries, prompt styles drawn by the
    spec's mix (per operation where ``spec.mix_by_op`` says so), some reworded by a paraphrase.

    Queries of the default validation and test splits never appear, so the models
    are always evaluated on queries they have not seen.
    """
    spec = spec or ZOO["tiny-arith"]
    if spec.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {spec.task!r}")
    if spec.task == "countdown":
        return countdown_corpus(n, seed)
    mixes = {op: spec.mix for op in OPS} | dict(spec.mix_by_op)
    for key, mix in mixes.items():
        unknown = [s for s, _ in mix if s not in PROMPTS]
        if key not in MIX_KEYS or unknown:
            raise ValueError(
                f"mix_by_op needs keys in {MIX_KEYS} and styles in {sorted(PROMPTS)}; got {key!r}, unknown {unknown}"
            )
    if not 0.0 <= spec.paraphrase_share <= 1.0:
        raise ValueError(f"paraphrase_share must lie in [0, 1], got {spec.paraphrase_share}")
    rewordings: dict[str, list[str]] = {}
    for p in PARAPHRASES.values():
        rewordings.setdefault(p.paraphrase_of, []).append(p.id)
    splits = make_splits()
    held_out = set(splits.validation) | set(splits.test)
    rng, adapter, out = random.Random(seed), PlainAdapter(), []
    while len(out) < n:
        q = random_query(rng)
        if q in held_out:
            continue
        mix = mixes.get(query_kind(q), mixes[q.op])
        style = rng.choices([s for s, _ in mix], [w for _, w in mix])[0]
        if spec.paraphrase_share and style in rewordings and rng.random() < spec.paraphrase_share:
            style = rng.choice(rewordings[style])
        p = get_prompt(style)
        out.append((adapter.prompt(q, p.id), p.demonstrate(q)))
    return out


def countdown_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, response) Countdown traces: puzzles drawn afresh (never one of the
    default validation or test puzzles), each with a random solution whose every step is
    uniform among the steps that keep the target reachable."""
    splits = countdown.make_splits()
    held_out = set(splits.validation) | set(splits.test)
    puzzles = countdown.make_puzzles(min(n, 20000), seed=seed + 1, target=(10, 99), exclude=held_out)
    rng = random.Random(seed)
    return [
        (p.prompt, countdown.response_text(p, countdown.random_solution(p, rng)))
        for p in (rng.choice(puzzles) for _ in range(n))
    ]


def build_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (GPT-2 style) whose digits are always single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)
    fast.padding_side = "left"
    return fast


# --- training -------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_transformers():
    """No per-shard progress bars from ``transformers`` while loading or saving a tiny model."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def init_model(spec: TinySpec, tokenizer):
    """A freshly initialised GPT-2 of ``spec``'s shape for ``tokenizer``, seeded by ``spec.seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.irlm_format = PLAIN_FORMAT
    with deterministic(spec.threads):
        torch.manual_seed(spec.seed)
        model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # the standard shifted cross-entropy, named to silence a warning
    return model


def train_tiny(spec: TinySpec, progress: bool = True):
    """Train ``spec`` from scratch; returns ``(model, tokenizer, info)``."""
    start = time.perf_counter()
    pairs = corpus(spec.steps * spec.batch_size, seed=spec.seed, spec=spec)
    tokenizer = build_tokenizer([p + r for p, r in pairs[:20000]], spec.vocab_size)
    model = init_model(spec, tokenizer)
    losses = behaviour_clone(
        model,
        tokenizer,
        pairs,
        steps=spec.steps,
        batch_size=spec.batch_size,
        lr=spec.lr,
        warmup=spec.warmup,
        weight_decay=spec.weight_decay,
        seed=spec.seed,
        threads=spec.threads,
        progress=progress,
        desc=f"training {spec.name}",
    )
    info = {
        "spec": asdict(spec),
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
    }
    return model, tokenizer, info


# --- the cache ------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verify(path: Path, spec: TinySpec) -> str | None:
    """``None`` if ``path`` holds a complete cache entry for ``spec``, else the reason not."""
    manifest = path / "manifest.json"
    if not manifest.exists():
        return "no manifest.json"
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return "manifest.json is not valid JSON"
    if meta.get("digest") != spec.digest():
        return "it was trained from another spec"
    for name, digest in meta.get("files", {}).items():
        f = path / name
        if not f.exists() or _sha256(f) != digest:
            return f"{name} is missing or its checksum does not match"
    if "model.safetensors" not in meta.get("files", {}):
        return "no model.safetensors"
    return None


def _save_atomically(model, tokenizer, info: dict, spec: TinySpec, final: Path) -> None:
    """Write into a temporary folder beside ``final``, then swap it in with one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "manifest.json").write_text(json.dumps({"digest": spec.digest(), "files": files, **info}, indent=1))
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=final.parent))
            os.replace(final, trash / "entry")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_dir(path: Path, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model.to(device).eval(), _ready_for_sampling(tokenizer)


def _ready_for_sampling(tokenizer):
    """Left padding (generation appends on the right) and a pad token (eos if none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def data_path(name: str) -> Path:
    """Where a chapter saves a data set for a later one (``$IRLM_CACHE/data/<name>``)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    return cache_root() / "data" / name


def save_dataset(dataset, name: str) -> Path:
    """Save a ``datasets.Dataset`` for a later chapter under :func:`data_path`, without a
    progress bar; returns the folder."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    path, was_enabled = data_path(name), is_progress_bar_enabled()
    disable_progress_bar()
    try:
        dataset.save_to_disk(str(path))
    finally:
        if was_enabled:
            enable_progress_bar()
    return path


def cache_path(name: str) -> Path:
    """Where the tiny model ``name`` lives in the cache."""
    return cache_root() / f"{name}-{ZOO[name].digest()}"


def load(name: str = "tiny-arith", device: str = "cpu", progress: bool = True, **hf_kwargs):
    """``(model, tokenizer)`` for a zoo name, a Hugging Face model id or a local path.

    Zoo models are trained on first use (a few minutes on 2 CPU cores) and cached; a
    corrupt or mismatched cache entry is retrained with a warning. Other names go to
    ``AutoModelForCausalLM.from_pretrained`` with safetensors weights only and no
    remote code (opt in with the ``trust_remote_code`` keyword if you trust the repository).
    """
    if name not in ZOO:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a zoo name {sorted(ZOO)} or a Hugging Face model id/path")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hf_kwargs.setdefault("trust_remote_code", False)
        try:
            model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, **hf_kwargs)
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=hf_kwargs["trust_remote_code"])
        except OSError as e:
            raise ValueError(
                f"{name!r} is neither a zoo model {sorted(ZOO)} nor a loadable Hugging Face model id or path ({e})"
            ) from None
        return model.to(device).eval(), _ready_for_sampling(tokenizer)

    from filelock import FileLock

    spec, path = ZOO[name], cache_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        reason = _verify(path, spec) if path.exists() else "not cached yet"
        if reason is None:
            try:
                return _load_dir(path, device)
            except Exception as e:  # a file that passed its checksum but still fails to load
                reason = f"it failed to load ({type(e).__name__}: {e})"
        if path.exists():
            warnings.warn(f"irlm cache entry {path} is unusable ({reason}); retraining {name}", stacklevel=2)
        model, tokenizer, info = train_tiny(spec, progress=progress)
        _save_atomically(model, tokenizer, info, spec, path)
    return _load_dir(path, device)


def info(name: str = "tiny-arith") -> dict:
    """The training record of a cached zoo model (parameters, seconds, final loss)."""
    return json.loads((cache_path(name) / "manifest.json").read_text())
