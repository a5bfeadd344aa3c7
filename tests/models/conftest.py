"""Model tests run torch on one thread: their tensors are tiny, and on a shared machine a second intra-op thread
waits for a busy core (each step runs many times slower than on one thread)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
