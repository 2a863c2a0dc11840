"""`make bench`: the numbers in the README's performance section, measured in one run
(``python tests/bench.py paths sampling`` runs some of its sections only).

1. the machine's dense matmul rate (float32, 512 x 512, the course's 2 threads): the
   yardstick for model FLOP utilisation (MFU), so the figure means the same on a slow
   and a fast machine;
2. for each zoo model, the first 100 training steps on the generic path (``transformers``'
   forward on right-padded batches, how the zoo trained before ``irlm.tinygpt``) and on
   the packed path (``irlm.tinygpt``), same batches: training tokens per second, MFU, ratio;
3. each zoo model trained from scratch in a temporary cache: seconds, tokens per second,
   MFU, and its quality on the default test set (greedy and pass@16 at temperature 1);
4. every chapter's wall time through papermill, with the models cached;
5. sampling throughput of ``irlm.sampling.sample`` vs ``model.generate`` with the same
   settings, tokens per second at batch 64 and 512, and their ratio;
6. chapter 7's MCTS: LM tokens per second inside the search, with the parent's KV cache
   reused and with every state re-encoded, and the wall-time ratio of the two;
7. chapter 9's RL loop: GRPO steps per second and sampled tokens per second inside the
   loop, ``irlm.rl.train`` vs TRL's ``GRPOTrainer`` (``irlm.rl.train_with_trl``) on the same
   model, batch (8 queries x 8 samples) and reward, and their ratio.

Model FLOPs of a training step follow Kaplan et al. (2020) and PaLM: 6 N per token for
the N parameters that multiply (all but the position table), plus attention, 6 * layers
* width * L (L + 1) for a demonstration of L tokens (causal: token t attends to t keys).
Only real tokens count, never padding.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from irlm import countdown, tasks, tinygpt, zoo
from irlm.adapters import PlainAdapter, sample_responses
from irlm.metrics import accuracy_ci, pass_at_k_curve
from irlm.proposer import rollouts
from irlm.sampling import _encode_left_padded, sample
from irlm.sft import behaviour_clone, encode_pairs

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2


def matmul_rate(size: int = 512, seconds: float = 2.0) -> float:
    """Dense float32 matmul FLOP/s on this machine with the course's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(10):
        a @ b
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
    return 2 * size**3 * calls / (time.perf_counter() - start)


def training_flops(model, rows: list[tuple[list[int], list[int]]]) -> tuple[float, int]:
    """Model FLOPs of one forward and backward pass over the demonstrations ``rows``, and their tokens."""
    config = model.config
    n = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    lengths = np.array([len(p) + len(r) for p, r in rows], dtype=np.float64)
    flops = 6 * n * lengths.sum() + 6 * config.n_layer * config.n_embd * (lengths * (lengths + 1)).sum()
    return float(flops), int(lengths.sum())


@contextlib.contextmanager
def temporary_cache():
    before = os.environ.get("IRLM_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["IRLM_CACHE"] = cache
        try:
            yield
        finally:
            if before is None:
                del os.environ["IRLM_CACHE"]
            else:
                os.environ["IRLM_CACHE"] = before


def bench_paths(name: str, peak: float, steps: int = 100) -> None:
    """The first ``steps`` steps of ``name``'s training on both paths, from the same start."""
    spec = zoo.ZOO[name]
    pairs = zoo.corpus(spec.steps * spec.batch_size, seed=spec.seed, spec=spec)
    tok = zoo.build_tokenizer([p + r for p, r in pairs[:20000]], spec.vocab_size)
    pairs = pairs[: steps * spec.batch_size]
    rows = encode_pairs(tok, pairs)
    model = zoo.init_model(spec, tok)
    flops, n_tokens = training_flops(model, rows)
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = {}
    for path in ("generic", "packed"):
        model.load_state_dict(start_state)
        generic = mock.patch.object(tinygpt, "supports", return_value=False)
        with generic if path == "generic" else contextlib.nullcontext():
            start = time.perf_counter()
            behaviour_clone(
                model, tok, pairs, steps, spec.batch_size, spec.lr, spec.warmup, spec.weight_decay, progress=False
            )
            seconds[path] = time.perf_counter() - start
        print(
            f"{name}, first {steps} steps, {path} path: {n_tokens / seconds[path]:,.0f} tokens/s, "
            f"MFU {flops / seconds[path] / peak:.1%}"
        )
    print(f"{name}: packed / generic training throughput {seconds['generic'] / seconds['packed']:.2f}x")


def quality(name: str, model, tok) -> str:
    """Greedy accuracy and pass@16 (temperature 1) on the default test set."""
    if zoo.ZOO[name].task == "countdown":
        starts = [countdown.State(p) for p in countdown.make_splits().test]
        greedy, _ = rollouts(model, tok, starts, temperature=0)
        sampled, _ = rollouts(model, tok, starts, n=16, seed=0)
        greedy_ok = np.array([s.is_solved for s in greedy])
        sampled_ok = np.array([s.is_solved for s in sampled]).reshape(len(starts), 16)
        what = f"{len(starts)} test puzzles"
    else:
        test = tasks.make_splits().test
        greedy_ok = sample_responses(model, tok, test, tasks.DEFAULT_PROMPT, temperature=0, batch_size=256).correct
        sampled_ok = sample_responses(model, tok, test, tasks.DEFAULT_PROMPT, n=16, temperature=1.0, batch_size=512)
        sampled_ok, what = sampled_ok.correct, f"{len(test)} test queries"
    return f"greedy {accuracy_ci(np.ravel(greedy_ok))}, pass@16 {pass_at_k_curve(sampled_ok, [16])[0]} ({what})"


def bench_training(name: str, peak: float) -> None:
    with temporary_cache():
        start = time.perf_counter()
        model, tok = zoo.load(name, progress=False)
        seconds = time.perf_counter() - start
        info = zoo.info(name)
        spec = zoo.ZOO[name]
        rows = encode_pairs(tok, zoo.corpus(spec.steps * spec.batch_size, seed=spec.seed, spec=spec))
        flops, n_tokens = training_flops(model, rows)
        torch.set_num_threads(THREADS)
        print(
            f"{name}: trained in {seconds:.0f} s ({info['n_params']:,} parameters, {spec.steps} steps, "
            f"final loss {info['final_loss']}); {n_tokens / seconds:,.0f} tokens/s, MFU {flops / seconds / peak:.1%} "
            f"(whole run: corpus, tokenizer, training, saving)"
        )
        print(f"{name}: {quality(name, model, tok)}")


def bench_chapters() -> None:
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "papermill",
                    "--no-progress-bar",
                    "--cwd",
                    str(ROOT / "notebooks"),
                    str(notebook),
                    f"{out}/out.ipynb",
                ],
                check=True,
                capture_output=True,
            )
        print(f"{notebook.stem} wall time (model cached): {time.perf_counter() - start:.0f} s")


def tokens_per_second(fn) -> float:
    start = time.perf_counter()
    n_tokens = fn()
    return n_tokens / (time.perf_counter() - start)


def bench_sampling() -> None:
    model, tok = zoo.load("tiny-arith")
    torch.set_num_threads(THREADS)
    queries = tasks.make_splits().test
    eos = tok.eos_token_id
    for batch in (64, 512):
        prompts = [PlainAdapter().prompt(queries[i % len(queries)], tasks.DEFAULT_PROMPT) for i in range(batch)]

        def ours(prompts: list[str] = prompts, batch: int = batch) -> int:
            return sample(model, tok, prompts, temperature=1.0, max_new_tokens=64, batch_size=batch).n_tokens

        def hf_generate(prompts: list[str] = prompts) -> int:
            ids, mask = _encode_left_padded(tok, prompts, model.device)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    max_new_tokens=64,
                    eos_token_id=eos,
                    pad_token_id=tok.pad_token_id,
                )
            new = out[:, ids.shape[1] :]
            ended = (new == eos).int()
            return int(torch.where(ended.any(1), ended.argmax(1) + 1, new.shape[1]).sum())

        ours(), hf_generate()  # warm-up
        a, b = tokens_per_second(ours), tokens_per_second(hf_generate)
        print(f"sampling at batch {batch}: irlm {a:,.0f} tokens/s, model.generate {b:,.0f} tokens/s, ratio {a / b:.2f}")


def bench_mcts_cache(n_puzzles: int = 40) -> None:
    from irlm import search
    from irlm.proposer import LMProposer

    model, tok = zoo.load("tiny-countdown")
    puzzles = countdown.make_splits().test[:n_puzzles]
    configs = {  # label: (reuse the parent's cache, run through irlm.tinygpt)
        "tinygpt, the parent's cache reused": (True, True),
        "transformers forward, the parent's cache reused": (True, False),
        "tinygpt, every state re-encoded": (False, True),
    }
    seconds = {}
    for label, (reuse, fast) in configs.items():
        proposer = LMProposer(model, tok, k=16, seed=0, reuse_cache=reuse)
        proposer.fast = fast
        start = time.perf_counter()
        for p in puzzles:
            search.mcts(
                countdown.State(p),
                proposer,
                countdown.state_value,
                lambda s: s.is_terminal,
                lambda s: float(s.is_solved),
                search.Budget(1500, unit="tokens"),
                stop_at=1.0,
                widen=2,
            )
        seconds[label] = time.perf_counter() - start
        print(f"MCTS, {label}: {proposer.tokens / seconds[label]:,.0f} LM tokens/s, {seconds[label]:.1f} s")
    first, *others = configs
    for label in others:
        print(f"MCTS wall time, {label} / {first}: {seconds[label] / seconds[first]:.2f}")


def bench_rl(steps: int = 6) -> None:
    import copy

    from irlm import rl

    model, tok = zoo.load("tiny-arith")
    adapter = PlainAdapter()
    answer = {adapter.prompt(q, tasks.DEFAULT_PROMPT): q.answer for q in tasks.make_splits().train}

    def gold(prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.array([float(adapter.parse_answer(r) == answer[p]) for p, r in zip(prompts, responses)])

    runners = {
        "irlm.rl.train": lambda p: rl.train(p, model, tok, list(answer), gold, steps=steps, queries_per_step=8),
        "TRL GRPOTrainer": lambda p: rl.train_with_trl(p, tok, list(answer), gold, steps=steps, queries_per_step=8),
    }
    rates = {}
    for label, run in runners.items():
        run(copy.deepcopy(model))  # warm-up (TRL's first step also builds its trainer)
        start = time.perf_counter()
        log = run(copy.deepcopy(model))
        seconds = time.perf_counter() - start
        rates[label] = steps / seconds
        tokens = sum(r["tokens"] for r in log) / seconds
        print(f"RL, {label}: {rates[label]:.2f} GRPO steps/s (64 samples a step), {tokens:,.0f} sampled tokens/s")
    ratio = rates["irlm.rl.train"] / rates["TRL GRPOTrainer"]
    print(f"RL steps per second, irlm.rl.train / TRL GRPOTrainer: {ratio:.2f}")


SECTIONS = ("paths", "training", "chapters", "sampling", "mcts", "rl")

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SECTIONS)
    if set(chosen) - set(SECTIONS):
        raise SystemExit(f"sections must be among {SECTIONS}, got {chosen}")
    torch.set_num_threads(THREADS)
    peak = matmul_rate()
    print(f"dense matmul, float32 512x512, {THREADS} threads: {peak / 1e9:.1f} GFLOP/s")
    for name in zoo.ZOO if "paths" in chosen else ():
        bench_paths(name, peak)
    for name in zoo.ZOO if "training" in chosen else ():
        bench_training(name, peak)
    if "chapters" in chosen:
        bench_chapters()
    if "sampling" in chosen:
        bench_sampling()
    if "mcts" in chosen:
        bench_mcts_cache()
    if "rl" in chosen:
        bench_rl()
