"""Shared fixtures: the project's Exp, pointed at a temporary dataset and run folder."""

import pytest

from yft.data.sample import make_sample_dataset
from yft.project import load_exp


@pytest.fixture
def exp(tmp_path):
    """The project's Exp with data and runs under tmp_path (the project folder stays clean)."""
    exp = load_exp()
    exp.data_dir = str(tmp_path / "data")
    exp.output_dir = str(tmp_path / "runs")
    exp.data_num_workers = 0
    return exp


@pytest.fixture
def sample_exp(exp):
    """`exp` with a small synthetic dataset written."""
    make_sample_dataset(exp, counts=(12, 6, 4), seed=1)
    return exp
