import random

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


@pytest.mark.parametrize("kwargs", [dict(seed=-1), dict(seed=1.5), dict(seed=0, threads=0)])
def test_seed_everything_bad_input(kwargs):
    with pytest.raises(ValueError):
        seed_everything(**kwargs)
