"""Tasks for people who maintain or try the yft template. `invoke --list` shows them.

invoke demo                      # render a sample project, train it briefly, evaluate, export, predict
invoke test                      # ruff, then the template's test suite (what CI runs)
invoke lint [--fix]              # ruff check and ruff format --check (or fix and format)
invoke render --dest myproj --data model=yolox_nano --data "class_names=[cat, dog]"
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from invoke import Collection, Exit, task

ROOT = Path(__file__).resolve().parent

# The demo project: small model and input so it learns something in minutes on a laptop CPU.
DEMO_ANSWERS = {
    "project_name": "Shapes Demo",
    "class_names": ["circle", "square", "triangle"],
    "model": "yolox_nano",
    # 160 px: at 128 the smallest objects are 16 px and val mAP50 stayed at 0.74-0.82 over seeds
    # (2 threads), 60 epochs or 256 images no better; 160 px reached 0.84-0.88 in 2 minutes
    "input_size": 160,
    "epochs": 40,
    "batch_size": 8,
    "tracker": "tensorboard",
}
# The demo shows finetuning, the product. Official COCO weights need a download, so the demo
# makes its own "pretrained" model first: trained from scratch on three *other* shapes (never
# on the demo's classes), cached in the weights cache so a second demo finetunes at once.
DEMO_BASE = {
    "project_name": "Shapes Base",
    "class_names": ["diamond", "cross", "ring"],
    "input_size": 128,  # the base learns shapes at 128 px, cheaper; YOLOX finetunes it at 160 as is
    "train": 192,
    "epochs": 50,
}
# Short schedules on small inputs: mosaic on half the batches only (four images in 128 px make
# objects of a few pixels), and a higher LR than the finetune profile (tuned for 50-100 epochs).
DEMO_BASE_SETTINGS = [
    "scratch_basic_lr_per_img=0.00125",
    "scratch_warmup_epochs=2",
    "no_aug_epochs=5",
    "mosaic_prob=0.5",
    "eval_interval=10",
]
DEMO_TRAIN_SETTINGS = [
    "basic_lr_per_img=0.00125",
    "warmup_epochs=1",
    "no_aug_epochs=5",
    "mosaic_prob=0.5",
    "eval_interval=5",
]
DEMO_TRAIN_IMAGES = 128


def parse_data(items):
    """['key=value', ...] -> {key: value}, values parsed as YAML (lists, numbers)."""
    import yaml

    data = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise Exit(f"error: --data {item!r}: expected key=value", code=1)
        data[key.strip()] = yaml.safe_load(value)
    return data


def render_project(dest, data, use_cookiecutter=False):
    """Render the template's working tree into dest with copier (or cookiecutter)."""
    dest = Path(dest).resolve()
    if use_cookiecutter:
        from cookiecutter.main import cookiecutter

        context = {k: ", ".join(v) if isinstance(v, list) else str(v) for k, v in data.items()}
        out = cookiecutter(
            str(ROOT), directory="template", no_input=True, extra_context=context, output_dir=str(dest.parent)
        )
        Path(out).rename(dest) if Path(out) != dest else None
        return dest
    import copier

    # Rendering the working tree (uncommitted edits included) is the point here.
    warnings.filterwarnings("ignore", message="Dirty template changes included automatically")
    copier.run_copy(str(ROOT), str(dest), data=data, defaults=True, unsafe=False, vcs_ref="HEAD", quiet=True)
    return dest


@task(
    iterable=["data"],
    help={
        "dest": "Folder for the new project",
        "data": "An answer, key=value (repeatable), e.g. model=yolox_nano",
        "cookiecutter": "Render through cookiecutter instead of copier",
    },
)
def render(c, dest, data=None, cookiecutter=False):
    """Render a project from this template (working tree included) into DEST."""
    if Path(dest).exists() and any(Path(dest).iterdir()):
        raise Exit(f"error: {dest} exists and is not empty", code=1)
    out = render_project(dest, parse_data(data), cookiecutter)
    print(f"rendered {out}")


def weights_cache():
    """The generated projects' weights cache ($YFT_WEIGHTS, else ~/.cache/yft/weights)."""
    return Path(os.environ.get("YFT_WEIGHTS") or Path.home() / ".cache" / "yft" / "weights")


def demo_base(c, py, epochs=DEMO_BASE["epochs"]):
    """The demo's base checkpoint: cached by a key over its recipe and the template's code (same
    key, same file), else trained now in a throw-away project."""
    # the code that trains it: the generated project's package and Exp (not its tests)
    project = ROOT / "template" / "{{cookiecutter.project_slug}}"
    code = sorted([*(project / "yft").rglob("*.py"), *(project / "exps").glob("*.py")])
    key = hashlib.sha256(
        json.dumps([DEMO_ANSWERS | DEMO_BASE, DEMO_BASE_SETTINGS, epochs]).encode()
        + b"".join(p.read_bytes() for p in code)
    ).hexdigest()[:12]
    cached = weights_cache() / "demo" / f"shapes_base_{key}.pth"
    if cached.is_file():
        print(f"base model: {cached} (cached by an earlier demo)")
        return cached
    with tempfile.TemporaryDirectory(prefix="yft-demo-base-") as tmp:
        base = render_project(Path(tmp) / "base", DEMO_ANSWERS | DEMO_BASE | {"epochs": epochs})
        settings = " ".join(f"--set {s}" for s in DEMO_BASE_SETTINGS)
        with c.cd(str(base)):
            c.run(f"{py} sample-data --train {DEMO_BASE['train']} --val 32 --test 0", echo=True)
            c.run(f"{py} train --device cpu --from-scratch --quiet --no-report {settings}", echo=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp_copy = cached.with_suffix(".tmp")
        shutil.copyfile(base / "runs" / "shapes_base_yolox_nano" / "train" / "best.pth", tmp_copy)
        os.replace(tmp_copy, cached)
    print(f"base model: {cached} (trained now on {', '.join(DEMO_BASE['class_names'])})")
    return cached


@task(
    help={
        "dest": "Folder for the demo project (replaced if it exists)",
        "epochs": "Finetuning epochs (INT)",
        "seed": "Random seed of the finetuning run (INT)",
    }
)
def demo(c, dest="demo-project", epochs=DEMO_ANSWERS["epochs"], seed=0):
    """Render a sample project, finetune a base model onto its classes on CPU, evaluate, export, predict
    the test images."""
    started = time.perf_counter()
    dest = Path(dest).resolve()
    if dest.exists():
        shutil.rmtree(dest)
    render_project(dest, DEMO_ANSWERS | {"epochs": epochs})
    print(f"rendered {dest}")
    py = f'"{sys.executable}" -m invoke'
    settings = " ".join(f"--set {s}" for s in DEMO_TRAIN_SETTINGS + [f"seed={seed}"])
    with c.cd(str(dest)):
        c.run(f"{py} setup", echo=True)
    base = demo_base(c, py)
    with c.cd(str(dest)):
        c.run(f"{py} sample-data --train {DEMO_TRAIN_IMAGES}", echo=True)
        c.run(f"{py} train --device cpu --ckpt {base} {settings}", echo=True)
        c.run(f"{py} eval --device cpu", echo=True)
        c.run(f"{py} export-onnx", echo=True)
        c.run(f"{py} predict --source datasets/shapes_demo/test2017 --device cpu", echo=True)
        c.run(f"{py} report", echo=True)  # again, now that the ONNX export exists to link
    run = dest / "runs" / "shapes_demo_yolox_nano" / "train"
    metrics = json.loads((run / "eval_val_torch" / "metrics.json").read_text())
    print(
        f"\ndemo done in {(time.perf_counter() - started) / 60:.1f} min: finetuned from a base model of other "
        f"shapes, val mAP50 {metrics['mAP50']:.3f}, mAP50:95 {metrics['mAP50_95']:.3f}"
    )
    for label, path in [
        ("project", dest),
        ("base model", base),
        ("checkpoint", run / "best.pth"),
        ("metrics", run / "eval_val_torch" / "metrics.json"),
        ("ONNX model", run / "best.onnx"),
        ("predictions", run / "predictions"),
        ("tensorboard logs", run / "tensorboard"),
        ("HTML report", run / "report.html"),
    ]:
        print(f"  {label:<17}{path}")


# Ruff reads ruff.toml here and, under template/, the generated project's pyproject.toml. The
# Exp template is Jinja until rendered: the render tests lint each rendered Exp instead. No cache:
# ruff would write one into template/'s project folder, and cookiecutter would copy it.
RUFF_EXCLUDE = "template/*/exps/*.py"


def run_ruff(c, fix=False):
    """ruff check (then ruff format --check) over the template; True when both pass."""
    ruff = f'"{sys.executable}" -m ruff'
    exclude = f'--no-cache --extend-exclude "{RUFF_EXCLUDE}"'
    with c.cd(str(ROOT)):
        if fix:
            c.run(f"{ruff} check --fix {exclude} .", warn=True, pty=False)
            c.run(f"{ruff} format {exclude} .", pty=False)
        ok = c.run(f"{ruff} check {exclude} .", warn=True, pty=False).ok
        ok = c.run(f"{ruff} format --check {exclude} .", warn=True, pty=False).ok and ok
    return ok


@task(help={"fix": "Apply ruff's safe fixes and format the code, then check what is left"})
def lint(c, fix=False):
    """Lint and format-check the template's Python with ruff (what `invoke test` runs first)."""
    if not run_ruff(c, fix):
        raise Exit("error: ruff found problems (`invoke lint --fix` fixes most)", code=1)


@task(help={"args": "Extra pytest arguments, e.g. -k render"})
def test(c, args=""):
    """Run ruff, then the template's test suite (render matrix, copier/cookiecutter, update, end to end)."""
    if not run_ruff(c):
        raise Exit("error: ruff found problems (`invoke lint --fix` fixes most)", code=1)
    result = c.run(f'"{sys.executable}" -m pytest {args}', warn=True, pty=False)
    if result.exited == 5:
        raise Exit("error: pytest collected no tests", code=1)
    if result.exited:
        raise Exit(code=result.exited)


ns = Collection(render, demo, lint, test)
