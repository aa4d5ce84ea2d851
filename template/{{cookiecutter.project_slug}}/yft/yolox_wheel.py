"""A pure-Python wheel of yolox 0.3.0, built once from its sdist and cached.

yolox 0.3.0 is published as an sdist only, and its setup.py always compiles a C++ extension
(a faster COCOeval that this project does not use: evaluation goes through faster-coco-eval).
That makes a C++ compiler and the Python headers a hidden prerequisite. Its Python code does not
need the extension, so `invoke setup` builds a wheel of the same sdist with the extension left
out, and honest metadata: the requirement pins of the sdist (onnx==1.8.1, onnxruntime==1.8.0,
which do not install on current Python) dropped, and `thop` replaced by `ultralytics-thop`, which
ships the same `thop.profile` without distutils (removed in Python 3.12).

The wheel is `yolox-0.3.0+noext-py3-none-any.whl` (a local version: `yolox==0.3.0` still matches),
the same for every Python and platform, cached in $YFT_WHEELS or ~/.cache/yft/wheels.

Standard library only: it runs before the project's dependencies are installed.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from yft.project import UserError

VERSION = "0.3.0"
LOCAL_VERSION = f"{VERSION}+noext"
WHEEL_NAME = f"yolox-{LOCAL_VERSION}-py3-none-any.whl"
SDIST_NAME = f"yolox-{VERSION}.tar.gz"
# The sdist on PyPI (uploaded 2022-04-18); a different file is refused.
SDIST_SHA256 = "1b8ee68846434408c40074f0806259fe3b9387181e562dbc435ea666533d8d08"

# What yolox's Python code imports (numpy, torch, torchvision, opencv, loguru, tqdm, tabulate,
# pycocotools, thop, tensorboard). opencv is left out on purpose: cv2 comes from
# opencv-python or opencv-python-headless, and metadata cannot say "either".
REQUIRES = [
    "numpy",
    "torch>=1.7",
    "torchvision",
    "loguru",
    "tqdm",
    "tabulate",
    "tensorboard",
    "pycocotools>=2.0.2",
    "ultralytics-thop>=2.0",
]

# setup.py edits, each (original text, replacement); the original must be there exactly once.
SETUP_PY_EDITS = [
    ("version=get_yolox_version(),", f"version={LOCAL_VERSION!r},"),
    ("install_requires=get_install_requirements(),", f"install_requires={REQUIRES!r},"),
    ('setup_requires=["wheel"],', ""),
    ("ext_modules=get_ext_modules(),", "ext_modules=[],"),
    ("cmdclass=get_cmd_class(),", "cmdclass={},"),
]


def wheel_dir():
    """$YFT_WHEELS, else ~/.cache/yft/wheels."""
    return Path(os.environ.get("YFT_WHEELS") or Path.home() / ".cache" / "yft" / "wheels")


def patch_setup_py(text):
    """yolox's setup.py without the C++ extension and with honest requirements."""
    for old, new in SETUP_PY_EDITS:
        if text.count(old) != 1:
            raise UserError(
                f"yolox {VERSION} sdist: setup.py does not contain {old!r} once; not the expected release"
            )
        text = text.replace(old, new)
    return text


def _pip(args, cwd=None):
    command = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=cwd)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(sdist, dest):
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuses links and absolute paths
            tar.extractall(dest, filter="data")
        else:
            for member in tar.getmembers():
                if (
                    member.issym()
                    or member.islnk()
                    or Path(member.name).is_absolute()
                    or ".." in Path(member.name).parts
                ):
                    raise UserError(f"{sdist}: unsafe member {member.name!r}")
            tar.extractall(dest)
    return Path(dest) / f"yolox-{VERSION}"


def ensure_wheel(pip_args=()):
    """The cached wheel's path, building it first if needed.

    The download runs pip with --no-build-isolation because pip reads the sdist's metadata by
    running its setup.py, which needs torch importable (installed by then) and setuptools.
    """
    target = wheel_dir() / WHEEL_NAME
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="yft-yolox-") as tmp:
        tmp = Path(tmp)
        _pip(
            [
                "download",
                "--no-deps",
                "--no-build-isolation",
                "--no-binary",
                "yolox",
                *pip_args,
                "-d",
                str(tmp),
                f"yolox=={VERSION}",
            ]
        )
        sdist = tmp / SDIST_NAME
        if not sdist.is_file():
            raise UserError(f"pip download did not produce {SDIST_NAME}")
        if _sha256(sdist) != SDIST_SHA256:
            raise UserError(f"{SDIST_NAME}: sha256 {_sha256(sdist)} is not the published {SDIST_SHA256}")
        src = _extract(sdist, tmp / "src")
        setup_py = src / "setup.py"
        setup_py.write_text(patch_setup_py(setup_py.read_text(encoding="utf-8")), encoding="utf-8")
        # yolox.egg-info from the sdist would carry the old requirements into the wheel.
        shutil.rmtree(src / "yolox.egg-info", ignore_errors=True)
        _pip(["wheel", "--no-deps", "--no-build-isolation", *pip_args, "-w", str(tmp / "out"), str(src)])
        built = tmp / "out" / WHEEL_NAME
        if not built.is_file():
            raise UserError(
                f"building yolox {VERSION} did not produce {WHEEL_NAME} "
                f"(got {sorted(p.name for p in (tmp / 'out').iterdir())})"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{WHEEL_NAME}.{os.getpid()}.partial")
        shutil.copyfile(built, partial)
        os.replace(partial, target)  # atomic: a parallel setup sees no half-written wheel
    print(f"built {target}")
    return target
