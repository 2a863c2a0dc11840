"""`make bench`: the numbers in the README's performance section, measured in one run.

1. base-model training time (fresh, in a temporary cache) and its accuracy on the
   default test set (greedy and pass@16 at temperature 1, default prompt);
2. every chapter's wall time through papermill, with the model cached;
3. sampling throughput of ``irlm.sampling.sample`` vs ``model.generate`` with the same
   settings, tokens per second at batch 64 and 512, and their ratio;
4. chapter 7's MCTS: LM tokens per second inside the search, with the parent's KV cache
   reused and with every state re-encoded, and the wall-time ratio of the two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from irlm import tasks, zoo
from irlm.adapters import PlainAdapter, sample_responses
from irlm.metrics import accuracy_ci, pass_at_k_curve
from irlm.sampling import _encode_left_padded, sample

ROOT = Path(__file__).resolve().parents[1]


def bench_training() -> None:
    before = os.environ.get("IRLM_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["IRLM_CACHE"] = cache
        start = time.perf_counter()
        model, tok = zoo.load("tiny-arith")
        seconds = time.perf_counter() - start
        test = tasks.make_splits().test
        greedy = sample_responses(model, tok, test, tasks.DEFAULT_PROMPT, temperature=0, batch_size=256)
        sampled = sample_responses(model, tok, test, tasks.DEFAULT_PROMPT, n=16, temperature=1.0, batch_size=512)
        info = zoo.info("tiny-arith")
    if before is None:
        del os.environ["IRLM_CACHE"]
    else:
        os.environ["IRLM_CACHE"] = before
    print(f"training: {seconds:.0f} s for {info['n_params']:,} parameters (final loss {info['final_loss']})")
    print(f"greedy accuracy, default prompt, {len(test)} default test queries: {accuracy_ci(greedy.correct[:, 0])}")
    print(f"pass@16 at T=1.0: {pass_at_k_curve(sampled.correct, [16])[0]}")


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
    torch.set_num_threads(2)
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
    from irlm import countdown, search
    from irlm.proposer import LMProposer

    model, tok = zoo.load("tiny-countdown")
    puzzles = countdown.make_splits().test[:n_puzzles]
    seconds = {}
    for reuse in (True, False):
        proposer = LMProposer(model, tok, k=16, seed=0, reuse_cache=reuse)
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
        seconds[reuse] = time.perf_counter() - start
        label = "KV cache of the parent reused" if reuse else "every state re-encoded"
        print(f"MCTS, {label}: {proposer.tokens / seconds[reuse]:,.0f} LM tokens/s, {seconds[reuse]:.1f} s")
    print(f"MCTS wall time, re-encoding / reusing the cache: {seconds[False] / seconds[True]:.2f}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    bench_training()
    bench_chapters()
    bench_sampling()
    bench_mcts_cache()
