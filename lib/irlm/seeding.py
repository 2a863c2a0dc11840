"""Reproducibility: one call at the top of every chapter."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, threads: int = 2) -> None:
    """Seed ``random``, NumPy and torch; fix the thread count; use deterministic kernels
    (without their NaN-filling of new tensors).

    With the same seed, thread count and CPU kind, a chapter computes the same numbers
    bit for bit, which is what the book's checked outputs rely on. (On a GPU, an op
    without a deterministic kernel warns instead of failing.)
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on a GPU
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # deterministic mode also fills every new tensor with NaN, a debugging aid that costs most
    # of a tiny model's backward pass; nothing here reads memory it has not written
    torch.utils.deterministic.fill_uninitialized_memory = False


def resolve_device(device: str) -> str:
    """The torch device a chapter runs on: ``"auto"`` is ``"cuda"`` when a GPU is present
    (e.g. on Colab) and ``"cpu"`` otherwise; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and
    ``"mps"`` are taken as they are. The book's checked outputs are computed on the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
