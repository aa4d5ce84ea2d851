"""`invoke setup`: install what this project needs into the active Python environment.

Works on CPython 3.10 to 3.13 on Linux, macOS and Windows, with no C++ compiler. Plain
`pip install yolox` does not: yolox 0.3.0 is an sdist that pins onnx 1.8.1 / onnxruntime 1.8.0
(no wheels on current Python), compiles a C++ extension and pulls `thop`, whose last release
imports distutils (gone in Python 3.12). So, each step only when needed (a second run takes
seconds):

1. bootstrap: `packaging` (version checks), `tomli` on 3.10 (reads pyproject.toml), setuptools
   (builds yolox's wheel and installs this project in editable mode);
2. torch and torchvision together, from the index that --torch picks;
3. every other requirement of pyproject.toml that is missing or outside its declared bounds;
4. yolox 0.3.0 as a pure-Python wheel built from its sdist without the extension (yolox_wheel.py);
5. this project, editable;
6. a final check that every declared requirement is installed inside its bounds.

Standard library only until step 1 has run.
"""

import importlib
import importlib.metadata as metadata
import json
import platform
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from yft.project import ROOT, UserError

YOLOX_VERSION = "0.3.0"
TORCH_CHOICES = ("auto", "cpu", "cuda")
# PyTorch's own index of CPU-only builds (~0.2 GB of wheels instead of ~3 GB with CUDA).
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


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


# ---------------------------------------------------------------- requirements


def bootstrap_missing():
    """What setup itself needs before it can read and check the requirements (names only: the
    bounds are in pyproject.toml and are checked with everything else)."""
    needed = ["packaging", "setuptools"]
    if sys.version_info < (3, 11):
        needed.append("tomli")
    return [name for name in needed if installed_version(name) is None]


def applicable(requirements):
    """packaging Requirements from strings, without those whose marker excludes this Python."""
    from packaging.requirements import Requirement

    reqs = [Requirement(text) for text in requirements]
    return [req for req in reqs if req.marker is None or req.marker.evaluate()]


def problem(req):
    """Why the installed distribution does not satisfy `req`, or None when it does."""
    version = installed_version(req.name)
    if version is None:
        return f"{req.name} is not installed (needs {req.specifier or 'any version'})"
    if not req.specifier.contains(version, prereleases=True):
        return f"{req.name} {version} is installed, {req} is needed"
    return None


def unsatisfied(reqs):
    return [req for req in reqs if problem(req)]


def wanted_requirements(extras):
    """Runtime dependencies, the chosen extras and the build requirements, as Requirements."""
    from yft.project import read_pyproject

    pyproject = read_pyproject()
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise UserError(
            f"--extras {','.join(unknown)}: pyproject.toml has no such extra (extras: {', '.join(optional)})"
        )
    texts = list(project["dependencies"]) + [r for extra in extras for r in optional[extra]]
    texts += pyproject.get("build-system", {}).get("requires", [])
    return project["name"], optional, applicable(texts)


# ---------------------------------------------------------------- torch


def nvidia_gpu():
    """True when nvidia-smi is on PATH and lists at least one GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(line.startswith("GPU ") for line in out.stdout.splitlines())


def reachable(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def torch_index_args(choice="auto", index=None, system=None, gpu=None, can_reach=reachable):
    """pip arguments choosing where torch and torchvision come from.

    PyPI's torch is the CUDA build on Linux (~3 GB of nvidia-* wheels, runs on CPU too), the
    CPU build on Windows, and the CPU/MPS build on macOS. PyTorch's CPU index serves CPU-only
    builds for Linux and Windows. "auto" takes CUDA where nvidia-smi finds a GPU, else CPU; when
    the CPU index cannot be reached it says so and falls back to PyPI.
    """
    if index:
        return ["--index-url", index]
    if choice not in TORCH_CHOICES:
        raise UserError(f"--torch {choice}: use one of {', '.join(TORCH_CHOICES)}")
    system = system or platform.system()
    if system == "Darwin":
        if choice == "cuda":
            raise UserError("--torch cuda: PyTorch has no CUDA builds for macOS (use auto or cpu)")
        return []
    if choice == "auto":
        choice = "cuda" if (nvidia_gpu() if gpu is None else gpu) else "cpu"
        print(
            f"--torch auto: {'an NVIDIA GPU' if choice == 'cuda' else 'no NVIDIA GPU'} found, "
            f"installing torch's {choice.upper()} build"
        )
        if choice == "cpu" and not can_reach(CPU_INDEX + "/torch/"):
            print(
                f"note: {CPU_INDEX} is not reachable from here; installing torch from the default "
                "index instead (on Linux that is the CUDA build, which also runs on CPU)"
            )
            return []
    if choice == "cpu":
        if not can_reach(CPU_INDEX + "/torch/"):
            raise UserError(
                f"--torch cpu: {CPU_INDEX} is not reachable from here; pass "
                "--torch-index URL (a mirror of it) or --torch cuda (PyPI's build)"
            )
        return ["--index-url", CPU_INDEX]
    if system == "Windows":
        raise UserError(
            "--torch cuda: PyPI's torch for Windows is CPU-only; pass --torch-index "
            "with the CUDA index for your driver, e.g. https://download.pytorch.org/whl/cu128"
        )
    return []


# ---------------------------------------------------------------- setup


def setup(extras=("dev",), torch="auto", torch_index=None, constraints=None, dry_run=False):
    """Install what is missing or out of bounds; return the list of pip argument lists it ran."""
    started = time.perf_counter()
    if torch not in TORCH_CHOICES:
        raise UserError(f"--torch {torch}: use one of {', '.join(TORCH_CHOICES)}")
    pin = []
    if constraints:
        path = Path(constraints).resolve()
        if not path.is_file():
            raise UserError(f"--constraints {constraints}: no such file")
        pin = ["-c", str(path)]
    steps = []

    def run(args):
        pip_install(args, dry_run)
        steps.append(args)

    boot = bootstrap_missing()
    if boot:
        run(pin + boot)
        importlib.invalidate_caches()
    if dry_run and boot:
        print("(dry run: the bootstrap packages are not installed, so nothing further is checked)")
        return steps
    name, optional, wanted = wanted_requirements(extras)

    torch_reqs = [r for r in wanted if r.name in ("torch", "torchvision")]
    if unsatisfied(torch_reqs):  # together, so pip picks a matching pair
        run(torch_index_args(torch, torch_index) + pin + [str(r) for r in torch_reqs])
    elif torch != "auto" or torch_index:
        print(
            f"torch {installed_version('torch')} is already installed; --torch/--torch-index "
            "only choose the build when torch is installed or upgraded"
        )

    # The old `thop` distribution and ultralytics-thop both own the `thop` module: remove the
    # old one first (it imports distutils), then (re)install the maintained one over it.
    reinstall_thop = installed_version("thop") is not None
    if reinstall_thop:
        command = [sys.executable, "-m", "pip", "uninstall", "-y", "thop"]
        print("+", " ".join(command), flush=True)
        if not dry_run:
            subprocess.run(command, check=True)
    others = [r for r in wanted if r not in torch_reqs]
    missing = [str(r) for r in unsatisfied(others)]
    thop = [str(r) for r in others if r.name == "ultralytics-thop"]
    if reinstall_thop and thop and thop[0] not in missing:
        run(pin + ["--force-reinstall", "--no-deps"] + thop)
    if missing:
        run(pin + missing)

    yolox = installed_version("yolox")
    if yolox is None or yolox.split("+")[0] != YOLOX_VERSION:
        from yft.yolox_wheel import WHEEL_NAME, ensure_wheel, wheel_dir

        wheel = wheel_dir() / WHEEL_NAME if dry_run else ensure_wheel()
        run(pin + ["--no-deps", str(wheel)])
    if not editable_install_points_here(name):
        run(["--no-deps", "--no-build-isolation", "-e", str(ROOT)])

    if not dry_run:
        check(wanted)
    tracker = _tracker_requirements(optional, dry_run)
    if tracker:
        run(pin + [str(r) for r in tracker])
        check(tracker)
    print(
        f"setup done in {time.perf_counter() - started:.0f} s"
        + ("" if steps else ": everything was already installed")
    )
    return steps


def check(wanted):
    """Every requirement installed inside its bounds, and yolox importable; else UserError."""
    problems = [problem(req) for req in wanted if problem(req)]
    if problems:
        raise UserError("after installing, " + "; ".join(problems))
    importlib.invalidate_caches()
    try:
        for module in ("yolox.exp", "yolox.utils", "thop"):
            importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"yolox does not import after setup: {err}") from None


def _tracker_requirements(optional, dry_run):
    """The mlflow or wandb extra when the Exp asks for that tracker and it is out of bounds."""
    from yft.project import load_exp

    if dry_run and installed_version("yolox") is None:  # the Exp cannot be loaded yet
        return []
    tracker = load_exp().tracker
    if tracker not in ("mlflow", "wandb"):
        return []
    return unsatisfied(applicable(optional.get(tracker, [])))
