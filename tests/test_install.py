"""The README's two commands on the other CPythons: 3.10, 3.12 and 3.13 (3.11 runs everything else).

For each interpreter the machine has (pyenv's, else pythonX.Y on PATH; skipped with the reason
when absent): a fresh venv, `pip install invoke`, a rendered project, `invoke setup` with the
project's constraints.txt (as CI installs), `invoke sample-data`, `invoke train --smoke`, and a
look at what was installed (no compiled yolox op, ultralytics-thop's `thop` in place of the old
`thop` the first run starts with, `pip check`) and at the checkpoint. The 3.13 run hides every
C++ compiler from PATH and builds yolox's wheel itself.

pip's download cache (~/.cache/pip) is shared by all venvs, so where pip caches downloads torch is
fetched once per Python version, and yolox's wheel is built once (~/.cache/yft/wheels) except in
the compiler-less run, which builds its own. Each venv is about 6.5 GB (torch's CUDA build, the
dev tools) and is deleted when its test ends; the test prints its setup time and venv size
(`pytest -rP tests/test_install.py`).
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import render_copier

pytestmark = [pytest.mark.slow]

# YFT_INSTALL_PYTHONS="3.13" (space separated) runs fewer, e.g. on a CI machine short of time.
VERSIONS = tuple(os.environ.get("YFT_INSTALL_PYTHONS", "3.10 3.12 3.13").split())
NO_COMPILER = "3.13"
# Executable names of C/C++ compilers, their drivers and linkers (gcc-12, x86_64-linux-gnu-g++, ...).
COMPILER = re.compile(
    r"(^|-)(cc|c\+\+|gcc|g\+\+|clang|clang\+\+|cpp|ld|ld\.\w+|as|nvcc|icx|icpx)"
    r"(-[\d.]+)?$"
)


def find_python(version):
    """An interpreter for X.Y: pyenv's newest X.Y.*, else pythonX.Y on PATH; None if neither."""
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout
        found = [v for v in out.split() if re.fullmatch(re.escape(version) + r"\.\d+", v)]
        for name in sorted(found, key=lambda v: int(v.rsplit(".", 1)[1]), reverse=True):
            prefix = subprocess.run(["pyenv", "prefix", name], capture_output=True, text=True)
            exe = Path(prefix.stdout.strip()) / "bin" / "python"
            if prefix.returncode == 0 and exe.is_file():
                return exe
    exe = shutil.which(f"python{version}")
    if exe:
        probe = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.stdout.strip() == version:
            return Path(exe)
    return None


def path_without_compilers(folder: Path):
    """A folder of links to every executable on PATH except compilers; the new PATH value."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            link = folder / entry.name
            if (
                COMPILER.search(entry.name)
                or link.exists()
                or not os.access(entry, os.X_OK)
                or entry.is_dir()
            ):
                continue
            link.symlink_to(entry)
    return str(folder)


def folder_size(path: Path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def run(args, cwd, env, timeout=1800):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


@pytest.mark.parametrize("version", VERSIONS)
def test_setup_sample_data_and_smoke_train(version, tmp_path):
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} here (pyenv versions, python{version} on PATH)")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", venv], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    vpy = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX", "PYTHONPATH")}
    env |= {"VIRTUAL_ENV": str(venv), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    path = os.environ["PATH"]
    if version == NO_COMPILER:
        path = path_without_compilers(tmp_path / "nocc")
        assert not any(shutil.which(c, path=path) for c in ("cc", "c++", "gcc", "g++", "clang"))
        env["YFT_WHEELS"] = str(tmp_path / "wheels")  # build yolox's wheel here, compiler-less
    env["PATH"] = os.pathsep.join([str(bindir), path])
    try:
        project = render_copier(tmp_path / "proj", {"model": "yolox_nano", "input_size": 128})
        run([vpy, "-m", "pip", "install", "invoke"], project, env)
        if version == VERSIONS[0]:  # as after an older setup: the old thop, which setup replaces
            run([vpy, "-m", "pip", "install", "--no-deps", "thop==0.1.1.post2209072238"], project, env)
        started = time.perf_counter()
        run([vpy, "-m", "invoke", "setup", "--constraints", "constraints.txt"], project, env)
        setup_s = time.perf_counter() - started
        size_gb = folder_size(venv) / 1e9

        probe = run(
            [
                vpy,
                "-c",
                "import importlib.metadata as m, importlib.util as u, thop, yolox.exp;"
                "print(u.find_spec('yolox.layers.fast_cocoeval') is None,"
                " m.version('yolox'), m.version('ultralytics-thop'),"
                " [d.metadata['Name'] for d in m.distributions() if d.metadata['Name'] == 'thop'])",
            ],
            project,
            env,
        ).stdout.split(maxsplit=3)
        assert probe[:2] == ["True", "0.3.0+noext"], probe  # no compiled op, our wheel
        assert probe[3].strip() == "[]", "the old thop distribution is installed"
        run([vpy, "-m", "pip", "check"], project, env)
        if version == NO_COMPILER:
            assert (tmp_path / "wheels" / "yolox-0.3.0+noext-py3-none-any.whl").is_file()

        run([vpy, "-m", "invoke", "sample-data", "--train", "16", "--val", "8", "--test", "4"], project, env)
        train = run([vpy, "-m", "invoke", "train", "--smoke", "--device", "cpu", "--quiet"], project, env)
        ckpt = project / "runs" / "widget_detector_yolox_nano" / "smoke" / "best.pth"
        assert ckpt.is_file(), train.stdout[-2000:]
        keys = run(
            [
                vpy,
                "-c",
                f"import torch; c = torch.load({str(ckpt)!r}, weights_only=True);"
                "print(sorted(c)); print(len(c['model']))",
            ],
            project,
            env,
        ).stdout.splitlines()
        assert "'model'" in keys[0] and int(keys[1]) > 100, keys
        print(
            f"Python {version}: invoke setup {setup_s:.0f} s, venv {size_gb:.1f} GB"
            + (", no compiler on PATH" if version == NO_COMPILER else "")
        )
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~5.5 GB each; pytest keeps old tmp folders
