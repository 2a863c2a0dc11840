import platform
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from irlm import seed_everything


def test_seed_everything_repeats_every_generator():
    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled()
    assert not torch.utils.deterministic.fill_uninitialized_memory, "no NaN-filling of new tensors"


def test_deterministic_block_sets_and_restores_the_settings():
    from irlm.sft import deterministic

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = True
    with deterministic(2):
        assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory
    assert torch.get_num_threads() == 1 and not torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory
    seed_everything(0)  # the settings every other test expects


@pytest.mark.parametrize("kwargs", [dict(seed=-1), dict(seed=1.5), dict(seed=0, threads=0)])
def test_seed_everything_bad_input(kwargs):
    with pytest.raises(ValueError):
        seed_everything(**kwargs)


def test_importing_irlm_pins_cpu_kernels_to_avx2(monkeypatch):
    for name in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    code = "import irlm, torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if platform.machine().lower() in {"x86_64", "amd64"}:
        assert out.strip() in {"AVX2", "DEFAULT"}


def test_resolve_device(monkeypatch):
    from irlm import resolve_device

    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    for present, expected in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda present=present: present)
        assert resolve_device("auto") == expected
    for bad in ("gpu", "cuda:x", ""):
        with pytest.raises(ValueError, match="device must be 'auto', 'cpu'"):
            resolve_device(bad)
