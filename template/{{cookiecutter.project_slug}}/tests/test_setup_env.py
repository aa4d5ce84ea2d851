"""`invoke setup`'s decisions: which torch build, which requirements are out of bounds, and the
yolox setup.py edits. (Installing for real on Python 3.10-3.13 is tested by the template's
tests/test_install.py, in fresh venvs.)"""

import os
import stat
import sys

import pytest

from yft.project import UserError
from yft.setup_env import CPU_INDEX, applicable, nvidia_gpu, problem, torch_index_args
from yft.yolox_wheel import LOCAL_VERSION, patch_setup_py

# The tail of yolox 0.3.0's setup.py, as published in its sdist (the call the edits touch).
YOLOX_SETUP_CALL = """
setuptools.setup(
    name="yolox",
    version=get_yolox_version(),
    author="megvii basedet team",
    package_dir=get_package_dir(),
    packages=setuptools.find_packages(exclude=("tests", "tools")) + list(get_package_dir().keys()),
    python_requires=">=3.6",
    install_requires=get_install_requirements(),
    setup_requires=["wheel"],  # avoid building error when pip is not updated
    include_package_data=True,  # include files in MANIFEST.in
    ext_modules=get_ext_modules(),
    cmdclass=get_cmd_class(),
)
"""


def reachable(url):
    return True


def unreachable(url):
    return False


@pytest.mark.parametrize("gpu, expected", [(True, []), (False, ["--index-url", CPU_INDEX])])
def test_auto_takes_cuda_only_with_a_gpu(gpu, expected):
    assert torch_index_args("auto", system="Linux", gpu=gpu, can_reach=reachable) == expected


def test_auto_falls_back_to_the_default_index_and_says_so(capsys):
    assert torch_index_args("auto", system="Linux", gpu=False, can_reach=unreachable) == []
    assert f"{CPU_INDEX} is not reachable" in capsys.readouterr().out


def test_explicit_cpu_fails_when_its_index_is_unreachable():
    with pytest.raises(UserError, match="--torch cpu: .* not reachable"):
        torch_index_args("cpu", system="Linux", can_reach=unreachable)
    assert torch_index_args("cpu", system="Windows", can_reach=reachable) == ["--index-url", CPU_INDEX]


def test_platform_rules_and_bad_choice():
    assert torch_index_args("auto", system="Darwin", gpu=False, can_reach=unreachable) == []
    with pytest.raises(UserError, match="no CUDA builds for macOS"):
        torch_index_args("cuda", system="Darwin")
    with pytest.raises(UserError, match="Windows is CPU-only"):
        torch_index_args("cuda", system="Windows")
    with pytest.raises(UserError, match="--torch rocm: use one of auto, cpu, cuda"):
        torch_index_args("rocm", system="Linux")
    assert torch_index_args("cuda", index="https://mirror.example/whl") == [
        "--index-url",
        "https://mirror.example/whl",
    ]


@pytest.mark.skipif(os.name == "nt", reason="shell-script stand-in for nvidia-smi")
@pytest.mark.parametrize(
    "script, found",
    [
        ('echo "GPU 0: NVIDIA H200 (UUID: GPU-4f6a1f2e-0c1d-4e55-9a0b-2b7d8c9e1f30)"', True),
        (
            'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9',
            False,
        ),
        ('echo "No devices were found"', False),
    ],
)
def test_nvidia_gpu_reads_nvidia_smi(tmp_path, monkeypatch, script, found):
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_gpu() is found


def test_nvidia_gpu_false_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_gpu() is False


def test_requirements_are_checked_against_their_bounds():
    pytest_version = __import__("importlib.metadata").metadata.version("pytest")
    ok, too_old, absent, other_python = applicable(
        [
            "pytest>=1",
            "pytest>=999",
            "no-such-distribution-yft>=1",
            f"pytest>=1; python_version < '{sys.version_info.major}.{sys.version_info.minor}'",
        ]
    ) + [None]
    assert other_python is None  # its marker excludes this Python
    assert problem(ok) is None
    assert problem(too_old) == f"pytest {pytest_version} is installed, pytest>=999 is needed"
    assert problem(absent) == "no-such-distribution-yft is not installed (needs >=1)"


def test_yolox_setup_py_loses_the_extension_and_the_pins():
    patched = patch_setup_py(YOLOX_SETUP_CALL)
    assert "ext_modules=[]," in patched and "cmdclass={}," in patched
    assert f"version={LOCAL_VERSION!r}," in patched
    assert "ultralytics-thop" in patched and "get_install_requirements()" not in patched
    assert "setup_requires" not in patched
    compile(patched, "setup.py", "exec")


def test_an_unexpected_setup_py_is_refused():
    with pytest.raises(UserError, match="does not contain 'ext_modules=get_ext_modules\\(\\),' once"):
        patch_setup_py(YOLOX_SETUP_CALL.replace("ext_modules=get_ext_modules(),", ""))
