"""Inference benchmark of a generated project: onnxruntime vs torch eager, end to end.

    python benchmarks/infer_bench.py                      # renders yolox_nano at 416 into a temp dir
    python benchmarks/infer_bench.py --project myproj     # an existing project (its Exp and best.pth if any)
    python benchmarks/infer_bench.py --input-size 128 --batch-sizes 1,8,32

Runs the project's own `invoke bench` code (letterbox + model + decode + NMS, real images from
`invoke sample-data`) for torch and onnx in one process, so both numbers come from the same
machine in the same minute. The target is a ratio, not a time: onnxruntime on CPU must be at
least --min-speedup (1.5x) faster than torch eager at batch 1 (p50 latency); exit 1 otherwise.
Needs the project stack (torch, yolox 0.3.0, onnxruntime) in this Python.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = r"""
import json, sys, tempfile
from pathlib import Path
import torch
from yft.project import load_exp
from yft.data.sample import make_sample_dataset
from yft.deploy.bench import benchmark, bench_images, format_table
from yft.deploy.onnx_export import export_onnx
from yft.inference import OnnxBackend, TorchBackend, default_checkpoint, load_model
from yft.project import UserError

args = json.loads(sys.argv[1])
exp = load_exp()
tmp = Path(tempfile.mkdtemp())
try:
    model = load_model(exp, default_checkpoint(exp))
    source = "runs/<exp>/train best checkpoint"
except UserError:
    model = exp.get_model()  # speed does not depend on the weights
    source = "untrained weights"
if not bench_images(exp, 1) or not Path(exp.data_dir, exp.val_name).is_dir():
    exp.data_dir = str(tmp / "data")
    make_sample_dataset(exp, counts=(4, 16, 0), seed=0)
export_onnx(model, exp, tmp / "model.onnx")
device = torch.device("cpu")
if args["threads"]:
    torch.set_num_threads(args["threads"])
backends = [TorchBackend(model, device), OnnxBackend(tmp / "model.onnx", threads=args["threads"] or None)]
rows = benchmark(backends, exp, args["batch_sizes"], device=device, min_time=args["min_time"])
print(f"{exp.model_name} at {exp.test_size[0]}x{exp.test_size[1]}, {source}, torch {torch.__version__}, "
      f"{torch.get_num_threads()} threads; end to end: letterbox + model + decode + NMS")
print(format_table(rows))
print("JSON " + json.dumps(rows))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", help="A generated project (default: render one)")
    parser.add_argument("--model", default="yolox_nano")
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--min-time", type=float, default=2.0, help="Seconds per row")
    parser.add_argument("--min-speedup", type=float, default=1.5)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="Threads for both torch and onnxruntime (default: their own defaults); "
        "1 gives steadier numbers on a busy machine",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(args.project) if args.project else None
        if project is None:
            sys.path.insert(0, str(ROOT))
            from tasks import render_project

            project = render_project(
                Path(tmp) / "proj",
                {
                    "model": args.model,
                    "input_size": args.input_size,
                    "class_names": ["cat", "dog", "bird"],
                    "tracker": "none",
                },
            )
        options = {
            "batch_sizes": [int(b) for b in args.batch_sizes.split(",")],
            "min_time": args.min_time,
            "threads": args.threads,
        }
        result = subprocess.run(
            [sys.executable, "-c", SNIPPET, json.dumps(options)],
            cwd=project,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(project)},
        )
    if result.returncode:
        sys.exit(result.stdout + result.stderr[-3000:])
    lines = result.stdout.splitlines()
    rows = json.loads(next(line for line in lines if line.startswith("JSON "))[5:])
    print("\n".join(line for line in lines if not line.startswith("JSON ")))
    onnx1 = next(r for r in rows if r["backend"] == "onnx" and r["batch_size"] == min(options["batch_sizes"]))
    ratio = onnx1["speedup_vs_torch"]
    verdict = "ok" if ratio >= args.min_speedup else "TOO SLOW"
    print(
        f"onnxruntime vs torch eager at batch {onnx1['batch_size']}: {ratio:.2f}x (target >= {args.min_speedup}x): {verdict}"
    )
    sys.exit(0 if ratio >= args.min_speedup else 1)


if __name__ == "__main__":
    main()
