"""`invoke setup`: install what this project needs into the active Python environment.

Plain `pip install yolox` fails on Python >= 3.10: yolox 0.3.0 pins onnx 1.8.1 and
onnxruntime 1.8.0, which have no wheels there, and its setup.py imports torch at build time.
So: torch and torchvision first (if missing), then the real runtime dependencies listed in
pyproject.toml, then `yolox==0.3.0` with --no-deps --no-build-isolation (it compiles a small
C++ op, so a compiler and the Python headers are needed), then this project in editable mode.
Only what is missing is installed, so a second run takes seconds.

Standard library only: this runs before anything else is installed.
"""

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import time

from yft.project import ROOT, read_pyproject

YOLOX_SPEC = "yolox==0.3.0"


def requirement_name(requirement):
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0]


def installed_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pip_install(args, dry_run=False):
    command = [sys.executable, "-m", "pip", "install", *args]
    print("+", " ".join(command), flush=True)
    if not dry_run:
        subprocess.run(command, check=True)


def editable_install_points_here(name):
    """True when `name` is installed in editable mode from this very folder."""
    try:
        text = metadata.distribution(name).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    if not text:
        return False
    info = json.loads(text)
    return info.get("dir_info", {}).get("editable", False) and info.get("url") == ROOT.as_uri()


def missing_requirements(requirements):
    return [req for req in requirements if installed_version(requirement_name(req)) is None]


def setup(extras=("dev",), dry_run=False):
    """Install what is missing; return the list of pip commands' argument lists it ran."""
    started = time.perf_counter()
    project = read_pyproject()["project"]
    optional = project.get("optional-dependencies", {})
    wanted = list(project["dependencies"]) + [req for extra in extras for req in optional[extra]]
    steps = []

    # torch and torchvision together, so pip picks a matching pair.
    torch_reqs = [r for r in wanted if requirement_name(r) in ("torch", "torchvision")]
    if missing_requirements(torch_reqs):
        steps.append(torch_reqs)
    others = missing_requirements([r for r in wanted if r not in torch_reqs])
    if others:
        steps.append(others)
    if installed_version("yolox") != YOLOX_SPEC.split("==")[1]:
        steps.append(["--no-deps", "--no-build-isolation", YOLOX_SPEC])
    if not editable_install_points_here(project["name"]):
        steps.append(["--no-deps", "--no-build-isolation", "-e", str(ROOT)])
    for args in steps:
        pip_install(args, dry_run)

    tracker_step = _tracker_requirements(optional)
    if tracker_step:
        pip_install(tracker_step, dry_run)
        steps.append(tracker_step)
    print(f"setup done in {time.perf_counter() - started:.0f} s"
          + ("" if steps else ": everything was already installed"))
    return steps


def _tracker_requirements(optional):
    """The mlflow or wandb extra when the Exp asks for that tracker and it is missing."""
    from yft.project import load_exp

    if installed_version("yolox") is None:  # dry run before yolox exists
        return []
    tracker = load_exp().tracker
    return missing_requirements(optional.get(tracker, [])) if tracker in ("mlflow", "wandb") else []
