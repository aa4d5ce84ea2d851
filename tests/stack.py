"""The generated projects' heavy stack (torch, yolox 0.3.0, onnxruntime ...), installed once.

A fresh CI machine has none of it: the first test that needs it renders a throwaway project
and runs that project's own `invoke setup`, exactly what a user does. A file lock keeps
pytest-xdist workers from running pip at the same time; later calls return at once.
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from helpers import render_copier

STACK_MODULES = ("torch", "torchvision", "yolox", "pycocotools", "onnxruntime", "onnx", "cv2")


def stack_importable():
    code = "; ".join(f"import {m}" for m in STACK_MODULES)
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def invoke(project, *args, check=True, timeout=900):
    """Run `python -m invoke ARGS` inside a project; return the CompletedProcess."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode:
        raise AssertionError(
            f"invoke {' '.join(args)} failed ({result.returncode}) in {project}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def ensure_stack(shared_dir: Path):
    """Install the stack through a rendered project's `invoke setup`, once per machine."""
    shared_dir.mkdir(parents=True, exist_ok=True)
    with open(shared_dir / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stack_importable():
            project = render_copier(shared_dir / "setup-project", {"model": "yolox_nano"})
            # The known-good versions, so that a new upstream release cannot break CI silently.
            invoke(project, "setup", "--constraints", "constraints.txt")
            assert stack_importable(), "invoke setup finished but the stack does not import"
