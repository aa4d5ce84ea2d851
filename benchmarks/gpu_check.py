"""GPU proof in one go: environment, fast-loss equivalence, step speed, both trainers, ONNX parity.

    python benchmarks/gpu_check.py --out gpu-check            # on a CUDA machine: the full check
    python benchmarks/gpu_check.py --out /tmp/gc --tiny       # CPU: the same steps, tiny (CI runs this)

Steps, each timed and recorded as ok / failed / skipped (with the reason) so one failure never
hides the others:
  1. environment: GPU, driver, torch, CUDA, cuDNN
  2. the generated project's tests/test_fast_loss.py (on CUDA it repeats the assignments there)
  3. benchmarks/train_step.py: official vs batched loss at 1/10/30 targets per image, with the GPU
     defaults and with --amp bf16, --channels-last, --compile (which of them help, by how much)
  4. learning: one synthetic dataset, the same Exp, seed, epochs and batch through `invoke train`
     and through YOLOX's own `yolox.tools.train` (CUDA-only: skipped on CPU), both checkpoints
     evaluated by the same `invoke eval`; AP50:95, AP50, wall time and images/s of each
  5. `invoke export-onnx` of our checkpoint (parity against torch is enforced by the task)
Everything lands in --out: results.json (all figures) and results.md (the tables).

On a device machine (see /work/.library/device/README.md) nothing can be downloaded, so prepare
here first: `python benchmarks/gpu_check.py --prepare` renders the project into .gpucheck/project
and puts the wheels the device image lacks into .whl (yolox 0.3.0 as a pure-Python wheel, its
dependencies, pycocotools, faster-coco-eval, ...). Then one device call, carrying both:
    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python benchmarks/gpu_check.py --project .gpucheck/project --out $OUT
TensorRT cannot be installed there (its wheels come from NVIDIA's own index, which that machine
cannot reach): the results say so, and the TensorRT tests keep skipping with that reason.
"""

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# Full (GPU) and tiny (CPU/CI) sizes of every step. The full one fits in ~8 minutes on an H100/H200.
PROFILES = {
    "full": {
        "model": "yolox_s",
        "size": 640,
        "batch": 64,
        "train": 3000,
        "val": 300,
        "epochs": 6,
        "steps": 10,
        "warmup": 3,
        "targets": "1,10,30",
    },
    "tiny": {
        "model": "yolox_nano",
        "size": 96,
        "batch": 4,
        "train": 8,
        "val": 4,
        "epochs": 1,
        "steps": 1,
        "warmup": 0,
        "targets": "1,10",
    },
}
STEP_VARIANTS = {
    "default": [],
    "bf16": ["--amp", "bf16"],
    "channels_last": ["--channels-last"],
    "compile": ["--compile"],
}
# Wheels the device image lacks (it has torch, torchvision, numpy, opencv, onnx, onnxruntime,
# tensorboard, matplotlib, scipy, pyyaml, jinja2, pillow, psutil, tabulate, tqdm).
DEVICE_WHEELS = [
    "loguru",
    "ultralytics-thop",
    "pycocotools",
    "faster-coco-eval",
    "defusedxml",
    "invoke",
    "orjson",
]


def run(cmd, cwd=None, timeout=None, env=None):
    """Run a command; return (exit code, stdout+stderr, seconds). Never raises on failure."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=(os.environ | (env or {}))
        )
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, out = 124, f"timed out after {timeout} s\n{err.stdout or ''}"
    return code, out, time.perf_counter() - start


def invoke(project, *args, timeout=None):
    return run([PY, "-m", "invoke", *args], cwd=project, timeout=timeout)


class Skip(Exception):
    """A step that cannot run here; the message is the reason recorded."""


def environment(ctx):
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": ctx["device"],
        "tensorrt": "not installable here (NVIDIA's index unreachable)",
    }
    if ctx["device"] == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        code, out, _ = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        info["driver"] = out.strip() if code == 0 else None
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return info


def fast_loss_tests(ctx):
    code, out, _ = run(
        [PY, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/test_fast_loss.py"],
        cwd=ctx["project"],
        timeout=600,
    )
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    if code:
        raise RuntimeError(f"tests/test_fast_loss.py failed: {summary}\n{out[-3000:]}")
    return {"summary": summary, "cuda": ctx["device"] == "cuda"}


def parse_step_table(out):
    """train_step.py's table rows -> [{targets, official_ms, batched_ms, ...}]."""
    keys = (
        "targets",
        "official_ms",
        "batched_ms",
        "official_img_s",
        "batched_img_s",
        "step_ratio",
        "loss_ms_official",
        "loss_ms_batched",
        "loss_ratio",
        "peak_mib_official",
        "peak_mib_batched",
        "peak_ratio",
    )
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == len(keys) and cells[0].isdigit():
            rows.append({k: float(v) for k, v in zip(keys, cells)})
    return rows


def step_speed(ctx):
    p = ctx["profile"]
    base = [
        PY,
        str(ROOT / "benchmarks" / "train_step.py"),
        "--device",
        ctx["device"],
        "--model",
        p["model"],
        "--size",
        str(p["size"]),
        "--batch",
        str(p["batch"]),
        "--steps",
        str(p["steps"]),
        "--warmup",
        str(p["warmup"]),
        "--targets",
        p["targets"],
    ]
    results = {}
    for name, extra in STEP_VARIANTS.items():
        if ctx["tiny"] and name != "default":
            results[name] = {"status": "skipped", "reason": "--tiny runs the default variant only"}
            continue
        # Peak memory once (default variant) on the GPU; never in --tiny (a child process per variant).
        memory = [] if name == "default" and not ctx["tiny"] else ["--no-memory"]
        code, out, seconds = run(base + extra + memory, timeout=300)
        rows = parse_step_table(out)
        results[name] = (
            {"status": "ok", "seconds": round(seconds, 1), "rows": rows}
            if code == 0 and rows
            else {"status": "failed", "reason": out[-1500:]}
        )
    if results["default"]["status"] != "ok":
        raise RuntimeError(f"train_step.py failed: {results['default']['reason']}")
    return results


def newest(pattern):
    paths = sorted(glob.glob(pattern, recursive=True), key=os.path.getmtime)
    return Path(paths[-1]) if paths else None


def eval_metrics(ctx, ckpt, name):
    out_dir = ctx["out"] / f"eval_{name}"
    code, out, _ = invoke(
        ctx["project"],
        "eval",
        "--ckpt",
        str(ckpt),
        "--device",
        ctx["device"],
        "--output",
        str(out_dir),
        timeout=900,
    )
    if code:
        raise RuntimeError(f"invoke eval of {ckpt} failed:\n{out[-2000:]}")
    m = json.loads((out_dir / "metrics.json").read_text())
    return {"mAP50_95": m["mAP50_95"], "mAP50": m["mAP50"]}


def shared_settings(ctx, out_dir):
    p = ctx["profile"]
    return {
        "max_epoch": p["epochs"],
        "seed": 0,
        "warmup_epochs": 1,
        "no_aug_epochs": 1,
        "eval_interval": p["epochs"],
        "basic_lr_per_img": 0.01 / 64,
        "output_dir": str(out_dir),
        "data_num_workers": 8 if ctx["device"] == "cuda" else 0,
    }


def learning(ctx):
    p, project = ctx["profile"], ctx["project"]
    force = ["--force"] if "--force" in invoke(project, "sample-data", "--help")[1] else []
    code, out, _ = invoke(
        project,
        "sample-data",
        "--train",
        str(p["train"]),
        "--val",
        str(p["val"]),
        "--test",
        "0",
        *force,
        timeout=900,
    )
    if code:
        raise RuntimeError(f"invoke sample-data failed:\n{out[-2000:]}")
    images = p["train"] * p["epochs"]
    results = {}

    ours_dir = ctx["out"] / "runs_ours"
    settings = shared_settings(ctx, ours_dir)
    args = ["train", "--device", ctx["device"], "--batch-size", str(p["batch"]), "--quiet"]
    args += [f"--set={k}={v}" for k, v in settings.items()]
    if ctx["device"] == "cuda":
        args += ["--amp", "fp16"]
    if "--from-scratch" in invoke(project, "train", "--help")[1]:
        args.append("--from-scratch")  # same random start as the official trainer
    code, out, seconds = invoke(project, *args, timeout=1800)
    ckpt = newest(str(ours_dir / "**" / "best.pth"))
    if code or ckpt is None:
        raise RuntimeError(f"invoke train failed ({code}):\n{out[-2500:]}")
    results["ours"] = {
        "wall_s": round(seconds, 1),
        "images_per_s": round(images / seconds, 1),
        "checkpoint": str(ckpt),
        **eval_metrics(ctx, ckpt, "ours"),
    }
    ctx["our_ckpt"] = ckpt

    if ctx["device"] != "cuda":
        results["official"] = {
            "status": "skipped",
            "reason": "yolox.core.Trainer is CUDA-only (torch.cuda.set_device, CUDA streams)",
        }
        return results
    official_dir = ctx["out"] / "runs_official"
    settings = shared_settings(ctx, official_dir)
    exp_file = newest(str(project / "exps" / "*.py"))
    opts = [str(v) for kv in settings.items() for v in kv]
    code, out, seconds = run(
        [
            PY,
            "-m",
            "yolox.tools.train",
            "-f",
            str(exp_file),
            "-d",
            "1",
            "-b",
            str(p["batch"]),
            "--fp16",
            *opts,
        ],
        cwd=project,
        timeout=1800,
        env={"PYTHONPATH": f"{project}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    # YOLOX's tools exit 0 even when they crash (@logger.catch): the checkpoint is the evidence.
    ckpt = newest(str(official_dir / "**" / "best_ckpt.pth")) or newest(
        str(official_dir / "**" / "last_epoch_ckpt.pth")
    )
    if ckpt is None:
        raise RuntimeError(f"yolox.tools.train wrote no checkpoint (exit {code}):\n{out[-2500:]}")
    results["official"] = {
        "wall_s": round(seconds, 1),
        "images_per_s": round(images / seconds, 1),
        "checkpoint": str(ckpt),
        **eval_metrics(ctx, ckpt, "official"),
    }
    o, y = results["ours"], results["official"]
    results["ap_gap_points"] = round(100 * (o["mAP50_95"] - y["mAP50_95"]), 2)
    results["speedup"] = round(y["wall_s"] / o["wall_s"], 2)
    return results


def onnx_export(ctx):
    ckpt = ctx.get("our_ckpt")
    if ckpt is None:
        raise Skip("no checkpoint from the learning step")
    code, out, _ = invoke(ctx["project"], "export-onnx", "--ckpt", str(ckpt), timeout=600)
    if code:
        raise RuntimeError(f"invoke export-onnx failed:\n{out[-2000:]}")
    parity = [line for line in out.splitlines() if "onnxruntime vs torch" in line]
    return {"parity": parity[-1].strip() if parity else None}


STEPS = {
    "environment": environment,
    "fast_loss_tests": fast_loss_tests,
    "step_speed": step_speed,
    "learning": learning,
    "onnx_export": onnx_export,
}


def markdown(results):
    lines = ["# GPU check", ""]
    env = results["steps"]["environment"].get("result", {})
    lines += [f"- {k}: {v}" for k, v in env.items()] + [""]
    lines += ["| step | status | seconds | note |", "| --- | --- | --- | --- |"]
    for name, step in results["steps"].items():
        note = step.get("reason", "")[:120].replace("\n", " ").replace("|", "/")
        lines.append(f"| {name} | {step['status']} | {step['seconds']} | {note} |")
    speed = results["steps"]["step_speed"].get("result", {})
    for variant, res in speed.items():
        if res.get("status") != "ok":
            continue
        lines += [
            "",
            f"## Training step ({variant})",
            "",
            "| targets/img | official ms | batched ms | step ratio | loss ratio | peak ratio |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['targets']:.0f} | {r['official_ms']:.1f} | {r['batched_ms']:.1f} | "
            f"{r['step_ratio']:.2f} | {r['loss_ratio']:.2f} | {r['peak_ratio']:.2f} |"
            for r in res["rows"]
        ]
    learn = results["steps"]["learning"].get("result", {})
    if learn:
        lines += [
            "",
            "## Learning (same Exp, data, seed, epochs, batch)",
            "",
            "| trainer | mAP50:95 | mAP50 | wall s | images/s |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name in ("ours", "official"):
            r = learn.get(name, {})
            if "wall_s" in r:
                lines.append(
                    f"| {name} | {r['mAP50_95']:.4f} | {r['mAP50']:.4f} | {r['wall_s']} | "
                    f"{r['images_per_s']} |"
                )
            else:
                lines.append(f"| {name} | {r.get('status')}: {r.get('reason')} | | | |")
    return "\n".join(lines) + "\n"


def prepare(dest):
    """Render the project and fetch the wheels a device machine lacks (run here, with network)."""
    sys.path.insert(0, str(ROOT))
    from tasks import render_project

    project = dest / "project"
    if project.exists():
        shutil.rmtree(project)
    p = PROFILES["full"]
    render_project(
        project,
        {
            "model": p["model"],
            "input_size": p["size"],
            "batch_size": p["batch"],
            "class_names": ["circle", "square", "triangle"],
        },
    )
    wheels = ROOT / ".whl"
    wheels.mkdir(exist_ok=True)
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28)] + [
        "--platform=manylinux2014_x86_64"
    ]
    for name in DEVICE_WHEELS:
        subprocess.run(
            [
                PY,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                *platforms,
                "-d",
                str(wheels),
                name,
            ],
            check=True,
        )
    sys.path.insert(0, str(project))
    from yft.yolox_wheel import ensure_wheel  # the pure-Python wheel `invoke setup` installs

    yolox = ensure_wheel()
    shutil.copy2(yolox, wheels / yolox.name)
    print(f"yolox wheel: {wheels / yolox.name}")
    print(f"prepared {project} and {wheels}: add /.whl/ and /.gpucheck/ to .git/info/exclude and carry both")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-check"), help="output folder (created)")
    ap.add_argument("--project", type=Path, help="an already rendered project (default: render one)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (default on a machine without CUDA)")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ", ".join(STEPS))
    ap.add_argument(
        "--prepare", action="store_true", help="render the project and fetch wheels for a device call"
    )
    args = ap.parse_args(argv)
    if args.prepare:
        return prepare(ROOT / ".gpucheck")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tiny = args.tiny or device != "cuda"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ctx = {"device": device, "tiny": tiny, "profile": PROFILES["tiny" if tiny else "full"], "out": out}
    if args.project:
        ctx["project"] = args.project.resolve()
    else:
        sys.path.insert(0, str(ROOT))
        from tasks import render_project

        p = ctx["profile"]
        ctx["project"] = render_project(
            out / "project",
            {"model": p["model"], "input_size": p["size"], "class_names": ["circle", "square", "triangle"]},
        )
    wanted = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(wanted) - set(STEPS))
    if unknown:
        sys.exit(f"error: --steps: unknown step(s) {', '.join(unknown)} (known: {', '.join(STEPS)})")
    results = {"profile": ctx["profile"], "tiny": tiny, "steps": {}}
    for name, func in STEPS.items():
        start = time.perf_counter()
        if name not in wanted:
            step = {"status": "skipped", "reason": "not in --steps"}
        else:
            try:
                step = {"status": "ok", "result": func(ctx)}
            except Skip as err:
                step = {"status": "skipped", "reason": str(err)}
            except Exception as err:  # noqa: BLE001 - one failing step must not hide the others' figures
                step = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
        step["seconds"] = round(time.perf_counter() - start, 1)
        results["steps"][name] = step
        print(f"{name}: {step['status']} ({step['seconds']} s) {step.get('reason', '')[:300]}", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    failed = [n for n, s in results["steps"].items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
