"""irlm: the thin library behind the course *Inverse RL meets LLMs*.

One module per idea, each serving a chapter or two:

* :mod:`irlm.tasks`    the world: arithmetic queries, instruction prompts, checkers
* :mod:`irlm.zoo`      tiny causal LMs trained on the world (or any Hugging Face model)
* :mod:`irlm.tinygpt`  GPT-2's forward written out: packed training rows, an in-place KV cache
* :mod:`irlm.adapters` query + instruction -> model text, and the answer back
* :mod:`irlm.sampling` batched sampling with a KV cache; log-probabilities of text
* :mod:`irlm.metrics`  accuracy with bootstrap CIs, pass@k, diversity, entropy
* :mod:`irlm.prompting` every prompt on every query: accuracy, oracle, best single prompt
* :mod:`irlm.sft`      behaviour cloning: the masked NLL, the training loop, LoRA
* :mod:`irlm.reward`   best-of-N, majority vote, the outcome reward model, best-of-N KL
* :mod:`irlm.preferences` Bradley-Terry arenas, simulated annotators, BT vs classifier heads
* :mod:`irlm.offline_irl` prompt reward models from logged outcomes, query-dependent prompt choice
* :mod:`irlm.countdown` Countdown puzzles: legal steps, checkers, exact values, the demonstrator
* :mod:`irlm.search`  reasoning as search: MCTS with PUCT, step-level beam search, compute budgets
* :mod:`irlm.proposer` a language model as the step proposer of a search, with KV-cache reuse
* :mod:`irlm.rl`       policy gradients against a reward: REINFORCE, RLOO, GRPO, DPO, TRL's trainer
* :mod:`irlm.iterate`  iterative fine-tuning: sample or search, filter, fine-tune, repeat
* :mod:`irlm.plot`     the book's one plotting style
"""

import os
import platform
import warnings
from pathlib import Path


def _pin_cpu_kernels() -> None:
    """The same numbers on every x86-64 CPU.

    torch, MKL and oneDNN choose their kernels by the CPU's instruction set (AVX2 or
    AVX-512), and the two round differently: the same seed then trains a different tiny
    model. Pinning all three to AVX2 makes the book's checked numbers match on any x86-64
    machine with AVX2. It must happen before torch loads; a value you set yourself wins.
    """
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2" not in cpuinfo.read_text():
        return
    for name, value in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")):
        os.environ.setdefault(name, value)


_pin_cpu_kernels()
# text progress bars work without ipywidgets; tqdm.auto's advice to install it is noise
warnings.filterwarnings("ignore", message="IProgress not found")

from irlm.seeding import resolve_device, seed_everything  # noqa: E402  (after the kernels are pinned)

__all__ = ["resolve_device", "seed_everything"]
__version__ = "0.1.0"
