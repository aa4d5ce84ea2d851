"""yft.io: atomic writes keep the umask, never half-write, and clean what a kill left behind."""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from yft.io import atomic_path, clean_stale_temps, copy_atomic, temp_name, write_atomic, write_json, write_png
from yft.project import UserError


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_atomic(tmp_path / "a.bin", b"x")
    write_json(tmp_path / "b.json", {"a": 1})
    write_png(tmp_path / "c.png", np.zeros((4, 4, 3), np.uint8))
    copy_atomic(tmp_path / "a.bin", tmp_path / "d.bin")
    with atomic_path(tmp_path / "e.npy") as tmp:
        np.save(tmp, np.zeros(3))
    for name in ("a.bin", "b.json", "c.png", "d.bin", "e.npy"):
        assert mode(tmp_path / name) == expected, name
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.json", "c.png", "d.bin", "e.npy"]


def test_checkpoint_follows_the_umask(tmp_path, umask):
    import torch

    from yft.train.checkpoint import save_checkpoint

    umask(0o022)
    save_checkpoint(tmp_path / "last.pth", {"w": torch.zeros(2)})
    assert mode(tmp_path / "last.pth") == 0o644


def test_rewrite_keeps_the_existing_mode(tmp_path, umask):
    path = tmp_path / "ann.json"
    write_atomic(path, b"old")
    os.chmod(path, 0o600)
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o600


def test_failure_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "x.npy"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.npy"]


@pytest.mark.parametrize("target", ["/dev/null", "FILE/out.json", "DIR"])
def test_unwritable_targets_are_one_line_errors(tmp_path, target):
    (tmp_path / "FILE").write_text("a file")
    (tmp_path / "DIR").mkdir()
    path = target if target.startswith("/") else tmp_path / target
    with pytest.raises(UserError, match="not a regular file|not a folder|is a folder"):
        write_atomic(path, b"x")
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_clean_stale_temps_removes_dead_writers_only(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    left = temp_name(tmp_path / "last.pth").name.replace(f".{os.getpid()}.", f".{dead_pid}.")
    (tmp_path / left).write_bytes(b"half a checkpoint")
    live = temp_name(tmp_path / "best.pth")  # this process is alive: its temp is being written
    live.write_bytes(b"in progress")
    (tmp_path / ".notes.tmp").write_text("a user's file")  # not ours
    (tmp_path / "last.pth").write_bytes(b"ok")
    removed = clean_stale_temps(tmp_path)
    assert [p.name for p in removed] == [left]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, ".notes.tmp", "last.pth"])


@pytest.mark.parametrize("target", ["/proc/yft-out", "FILE/out", "/dev/null"])
def test_output_folders_are_checked_before_the_work(tmp_path, target):
    from yft.io import ensure_dir

    (tmp_path / "FILE").write_text("a file")
    path = target if target.startswith("/") else tmp_path / target
    with pytest.raises(UserError, match="cannot write here"):
        ensure_dir(path)
    assert ensure_dir(tmp_path / "new" / "deep").is_dir() and not os.listdir(tmp_path / "new" / "deep")
