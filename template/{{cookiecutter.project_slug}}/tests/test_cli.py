"""The task front door: typed values in --help, one-line errors for bad option values and for
OS errors on named files, no short-flag collisions."""

import subprocess
import sys

import pytest

from yft.cli import check_options
from yft.project import ROOT, UserError


def invoke(*args):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_names_value_types_and_has_no_broken_short_flags():
    train = invoke("train", "--help").stdout
    assert "--=" not in train and "--node-rank=INT" in train and "--master-port=INT" in train
    split = invoke("split", "--help").stdout
    assert "--train=NUMBER" in split and "--ann=STRING" in split


def test_a_value_of_the_wrong_type_is_one_line():
    result = invoke("eval", "--conf", "abc")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "--conf 'abc': expected a number"


def sample(c, batch_size=0, conf=-1.0, train=0.8, nms=-1.0, master_port=29500, seed=0):
    """A task signature like tasks.py's."""


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": -4}, "--batch-size -4: must be at least 1"),
        ({"conf": 4.0}, "--conf 4.0: must be between 0 and 1"),
        ({"nms": -0.5}, "--nms -0.5: must be between 0 and 1"),
        ({"train": 1.5}, "--train 1.5: must be between 0 and 1"),
        ({"master_port": 70000}, "must be a port number"),
        ({"seed": -1}, "--seed -1: must be at least 0"),
    ],
)
def test_out_of_range_values_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        check_options(sample, options)


def test_defaults_and_sensible_values_pass():
    check_options(sample, {"batch_size": 0, "conf": -1.0, "train": 0.7, "nms": 0.45, "master_port": 29500})


def test_unwritable_output_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8")
    result = invoke("overlap-sample", "--images", str(tmp_path), "--out", str(tmp_path / "file" / "list.txt"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write here" in result.stderr and result.stderr.count("\n") == 1


def test_train_refuses_a_negative_batch_size_from_python_too(exp):
    import torch

    from yft.train.run import train

    with pytest.raises(UserError, match="batch size -4: it must be at least 1"):
        train(exp, torch.device("cpu"), batch_size=-4)
