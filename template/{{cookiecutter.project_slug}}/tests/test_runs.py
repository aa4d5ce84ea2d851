"""Run folders: each `invoke train` its own folder, a `latest` pointer every other task follows."""

import os

import pytest
import torch
from synthetic_models import tiny as tiny_run

from yft import runs
from yft.inference import default_checkpoint
from yft.project import UserError
from yft.train.checkpoint import load_checkpoint
from yft.train.hooks import HookBase
from yft.train.run import train


def test_runs_are_numbered_and_latest_follows(exp):
    root = runs.runs_root(exp)
    with pytest.raises(UserError, match="run `invoke train` first"):
        runs.resolve_run(exp)
    first, second = runs.new_run(exp), runs.new_run(exp)
    assert (first.name, second.name) == ("train", "train2")
    assert runs.resolve_run(exp) == second and os.readlink(root / "latest") == "train2"
    named = runs.new_run(exp, "big-lr")
    assert runs.resolve_run(exp) == named and runs.resolve_run(exp, "train") == first
    smoke = runs.new_run(exp, smoke=True)
    assert smoke.name == "smoke" and runs.resolve_run(exp) == named  # a smoke check is not `latest`
    assert runs.resolve_run(exp, smoke=True) == smoke
    assert runs.new_run(exp).name == "train3"


def test_names_are_checked_and_runs_never_reused(exp):
    for bad in ("../x", "a/b", "latest", "release", ".hidden", ""):
        with pytest.raises(UserError, match="--name"):
            runs.new_run(exp, bad or "/")
    folder = runs.new_run(exp, "mine1")
    (folder / "best.pth").write_bytes(b"weights")
    with pytest.raises(UserError, match="--resume --name mine1"):
        runs.new_run(exp, "mine1")
    with pytest.raises(UserError, match="no such run"):
        runs.resolve_run(exp, "nope")


def test_pointer_as_text_file_and_projects_without_pointer(exp):
    root = runs.runs_root(exp)
    (root / "train").mkdir(parents=True)
    (root / "train2").mkdir()
    assert runs.resolve_run(exp).name == "train2"  # made before run folders had a pointer
    (root / "latest").write_text("train\n")  # where the file system has no symlinks
    assert runs.resolve_run(exp).name == "train"
    (root / "latest").write_text("../../etc\n")
    with pytest.raises(UserError, match="not a run folder"):
        runs.resolve_run(exp)


def test_default_checkpoint_is_the_latest_runs(exp):
    folder = runs.new_run(exp)
    with pytest.raises(UserError, match=r"no checkpoint in .* \(still training"):
        default_checkpoint(exp)
    (folder / "last.pth").write_bytes(b"x")
    assert default_checkpoint(exp) == folder / "last.pth"
    (folder / "best.pth").write_bytes(b"x")
    assert default_checkpoint(exp) == folder / "best.pth"


def tiny(exp, **settings):
    """One short epoch without mosaic or validation."""
    return tiny_run(
        exp, **{"max_epoch": 1, "warmup_epochs": 0, "no_aug_epochs": 0, "eval_interval": 100} | settings
    )


def test_second_train_leaves_the_first_alone_and_resume_continues_latest(sample_exp):
    exp = tiny(sample_exp)
    first = train(exp, torch.device("cpu"), batch_size=4, progress=False, max_iters_per_epoch=1)
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}

    class Kill(HookBase):
        def after_epoch(self):
            raise KeyboardInterrupt  # killed after the first epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(
            tiny(exp, max_epoch=2),
            torch.device("cpu"),
            batch_size=4,
            progress=False,
            max_iters_per_epoch=1,
            extra_hooks=[Kill()],
        )
    second = runs.resolve_run(exp)
    stale = second / ".last.pth.999999999.0123abcd.yft-tmp"  # a kill during a checkpoint write left it
    stale.write_bytes(b"half a checkpoint")
    assert (first.name, second.name) == ("train", "train2")
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == before
    out = train(
        tiny(exp, max_epoch=2),
        torch.device("cpu"),
        batch_size=4,
        progress=False,
        max_iters_per_epoch=1,
        resume=True,
    )
    assert out == second and load_checkpoint(second / "last.pth")["epoch"] == 2
    assert not stale.exists()
    assert sorted(p.name for p in runs.runs_root(exp).iterdir()) == ["latest", "train", "train2"]


def test_resume_of_a_run_without_a_checkpoint_says_to_start_anew(sample_exp):
    """A run stopped before its first checkpoint is still `latest`: --resume names the missing
    last.pth and what to do instead, and writes nothing."""
    exp = tiny(sample_exp)
    folder = runs.new_run(exp)  # what a run leaves when it is stopped during its first epoch
    before = sorted(p.name for p in runs.runs_root(exp).iterdir())
    with pytest.raises(UserError, match=r"train/last.pth: nothing to resume .* without --resume"):
        train(exp, torch.device("cpu"), batch_size=4, progress=False, resume=True)
    assert sorted(p.name for p in runs.runs_root(exp).iterdir()) == before and not any(folder.iterdir())
