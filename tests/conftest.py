"""Shared fixtures: small deterministic models and data, single-threaded torch for reproducible timings."""

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
