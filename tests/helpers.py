"""Shared helpers for the template's tests: render a project both ways, read copier.yml, walk trees.

`render_copier` and `render_cookiecutter` are the two front doors the tests (and test_e2e.py) use:

    project = render_copier(tmp_path / "proj", {"class_names": ["helmet", "vest"]})
    project = render_cookiecutter(tmp_path / "out", {"class_names": ["helmet", "vest"]})

Both take the same answer dict (copier's types: lists and ints allowed) and return the project root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import copier
import yaml
from cookiecutter.main import cookiecutter
from copier.errors import DirtyLocalWarning

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
COPIER_YML = TEMPLATE_ROOT / "copier.yml"
COOKIECUTTER_JSON = TEMPLATE_ROOT / "template" / "cookiecutter.json"
PROJECT_TEMPLATE = TEMPLATE_ROOT / "template" / "{{cookiecutter.project_slug}}"
ANSWERS_FILE = ".copier-answers.yml"

# Files whose bytes may differ between the two front doors (copier-only bookkeeping).
COPIER_ONLY = frozenset({ANSWERS_FILE})

# YOLOX's own default input size per model (copier.yml and cookiecutter.json repeat this rule).
SMALL_MODELS = ("yolox_nano", "yolox_tiny")


# ------------------------------------------------------------------ copier.yml
def load_questions() -> dict:
    """copier.yml as a dict (configuration keys start with `_`)."""
    return yaml.safe_load(COPIER_YML.read_text(encoding="utf-8"))


def choices(question: str) -> list:
    """The allowed values of a `choices:` question (a mapping's values: its keys are labels)."""
    spec = load_questions()[question]["choices"]
    return list(spec.values()) if isinstance(spec, dict) else list(spec)


# ------------------------------------------------------------------ answers
def split_names(class_names) -> list[str]:
    """The class names a project should end up with, from a list or a comma-separated string."""
    items = class_names.split(",") if isinstance(class_names, str) else class_names
    return [item.strip() for item in items]


def expected_class_names(data: dict) -> list[str]:
    """Our class names as rendered (the template's default when `data` has none)."""
    if "class_names" in data:
        return split_names(data["class_names"])
    return split_names(yaml.safe_load(load_questions()["class_names"]["default"]))


def expected_input_size(data: dict) -> int:
    model = data.get("model", load_questions()["model"]["default"])
    return int(data.get("input_size", 416 if model in SMALL_MODELS else 640))


def to_cookiecutter(data: dict) -> dict:
    """copier answers -> cookiecutter extra_context: lists joined with ', ', numbers as text."""
    out = {}
    for key, value in data.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(value)
        elif not isinstance(value, str):
            value = str(value)
        out[key] = value
    return out


# ------------------------------------------------------------------ rendering
def render_copier(dest, data: dict, vcs_ref: str = "HEAD", src=TEMPLATE_ROOT) -> Path:
    """`copier copy` the template into `dest` (the project root) with `data`; return `dest`.

    `vcs_ref="HEAD"` renders the working tree as it is, uncommitted changes included (copier does
    that for a dirty local HEAD); any other ref renders that commit or tag. The source is made
    absolute, since copier stores it in the answers file for `copier update`.
    """
    dest = Path(dest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DirtyLocalWarning)
        copier.run_copy(
            str(Path(src).resolve()),
            str(dest),
            data=dict(data),
            defaults=True,
            unsafe=False,
            vcs_ref=vcs_ref,
            quiet=True,
        )
    return dest


def render_cookiecutter(dest, data: dict) -> Path:
    """Run cookiecutter (no input) with `data` into the output folder `dest`; return the project root.

    `data` may use copier's types (lists, ints); see `to_cookiecutter`. The user's own cookiecutter
    config (~/.cookiecutterrc and its default_context) is ignored, and the replay file goes to a
    throwaway folder, so the result depends on the template alone.
    """
    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="yft-cc-") as scratch:
        config = {
            "cookiecutters_dir": str(Path(scratch) / "cookiecutters"),
            "replay_dir": str(Path(scratch) / "replay"),
        }
        project = cookiecutter(
            str(TEMPLATE_ROOT),
            no_input=True,
            extra_context=to_cookiecutter(data),
            directory="template",
            output_dir=str(dest),
            default_config=config,
        )
    return Path(project)


# ------------------------------------------------------------------ trees
def tree_files(root) -> dict[str, bytes]:
    """Every regular file under `root` (relative POSIX path -> bytes); empty folders don't count."""
    root = Path(root)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def static_problems(root) -> list[str]:
    """Leftover Jinja, and Python/JSON/TOML/YAML files that do not parse, in a rendered project."""
    problems = []
    for rel, data in tree_files(root).items():
        for marker in ("{{", "{%", "{#"):
            if marker in rel:
                problems.append(f"{rel}: unrendered {marker!r} in the file name")
        if is_binary(data):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(f"{rel}: not UTF-8 ({error})")
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for marker in ("{{", "{%", "{#"):
                if marker in line:
                    problems.append(f"{rel}:{number}: unrendered {marker!r}: {line.strip()}")
        suffix = Path(rel).suffix
        try:
            if suffix == ".py":
                compile(text, rel, "exec")
            elif suffix in (".json", ".ipynb"):
                json.loads(text)
            elif suffix == ".toml":
                tomllib.loads(text)
            elif suffix in (".yml", ".yaml"):
                list(yaml.safe_load_all(text))
        except Exception as error:  # noqa: BLE001 - report every kind of parse error
            problems.append(f"{rel}: does not parse: {type(error).__name__}: {error}")
    return problems


# ------------------------------------------------------------------ lint
def ruff_problems(root, paths=(".",)) -> list[str]:
    """`ruff check` and `ruff format --check` findings for `paths` in a rendered project, run from
    its root so that its own pyproject.toml settings apply."""
    ruff = [sys.executable, "-m", "ruff"]
    commands = [
        [*ruff, "check", "--no-cache", "--output-format", "concise", *paths],
        [*ruff, "format", "--no-cache", "--check", *paths],
    ]
    problems = []
    for command in commands:
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
        if result.returncode:
            problems.append(f"$ {' '.join(command[2:])}\n{result.stdout}{result.stderr}")
    return problems


# ------------------------------------------------------------------ the rendered Exp
_EXP_PROBE = r"""
import importlib.util, json, sys
from yolox.data.datasets import COCO_CLASSES
from yolox.exp import get_exp

path, model = sys.argv[1], sys.argv[2]
try:
    exp = get_exp(path)
except ImportError:
    # get_exp hides the real error behind "doesn't contains class named 'Exp'": show it.
    spec = importlib.util.spec_from_file_location("exp_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exp = module.Exp()
official = get_exp(exp_name=model)
import yft
print(json.dumps({
    "class_names": list(exp.class_names),
    "num_classes": exp.num_classes,
    "depth": exp.depth,
    "width": exp.width,
    "depthwise": getattr(exp, "depthwise", None),
    "input_size": list(exp.input_size),
    "test_size": list(exp.test_size),
    "max_epoch": exp.max_epoch,
    "official_depth": official.depth,
    "official_width": official.width,
    "coco_class_names": list(COCO_CLASSES),
    "yft_path": list(getattr(yft, "__path__", [])),
}))
"""


def load_exp(project, exp_file, model: str) -> dict:
    """Load the project's Exp with `yolox.exp.get_exp` in a fresh interpreter run from `project`.

    PYTHONPATH and the working folder are the project root, so `import yft` finds this project's
    own package. Returns the Exp's key settings, YOLOX's official depth/width for `model`, and
    COCO's class names.
    """
    project = Path(project)
    env = {**_clean_env(), "PYTHONPATH": str(project)}
    result = subprocess.run(
        [sys.executable, "-c", _EXP_PROBE, str(exp_file), model],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        raise AssertionError(f"loading {exp_file} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env
