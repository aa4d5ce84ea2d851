"""`invoke label-issues` against known label errors, and against two simple baselines, in one run.

    python benchmarks/label_issues_bench.py                       # K-fold, 3 folds
    python benchmarks/label_issues_bench.py --folds 2 --epochs 4 --train 48 --val 16   # smaller

Renders a sample project, makes its synthetic dataset, injects label errors into every split
(a --fraction of the boxes each deleted, given a wrong class, shifted, plus as many invented
boxes; seeded), runs `invoke label-issues` on it, and reports precision and recall at N (N = the
number injected) overall and per kind for three rankings of the same candidates:
  ours        cleanlab's scores sorted into issue types (yft.evaluate.label_issues.scoring)
  confidence  1 - the confidence of the best same-class prediction on each label; unlabelled
              predictions by their confidence (no cleanlab)
  random      a seeded shuffle
The out-of-sample predictions come from the task's own fold runs, so all three rank the same
predictions.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=96)
    ap.add_argument("--val", type=int, default=24)
    ap.add_argument("--test", type=int, default=0)
    ap.add_argument("--fraction", type=float, default=0.05, help="share of boxes per kind of error")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--size", type=int, default=160, help="input size (px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dest", type=Path, help="project folder (default: a temporary one)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tasks import render_project

    dest = args.dest or Path(tempfile.mkdtemp(prefix="yft-li-")) / "proj"
    project = render_project(
        dest,
        {"model": "yolox_nano", "input_size": args.size, "class_names": ["circle", "square", "triangle"]},
    )
    py = [sys.executable, "-m", "invoke"]
    subprocess.run(
        py
        + [
            "sample-data",
            "--train",
            str(args.train),
            "--val",
            str(args.val),
            "--test",
            str(args.test),
            "--seed",
            str(args.seed),
        ],
        cwd=project,
        check=True,
    )
    sys.path.insert(0, str(project))
    from yft.data.coco_io import annotation_path, read_json
    from yft.evaluate.label_issues.recovery import inject_errors, recovery
    from yft.evaluate.label_issues.scoring import confidence_baseline
    from yft.io import write_json
    from yft.project import load_exp

    exp = load_exp()
    injected = []
    for n, split in enumerate(
        s for s, c in (("train", args.train), ("val", args.val), ("test", args.test)) if c
    ):
        path = annotation_path(exp, split)
        noisy, errors = inject_errors(read_json(path), args.fraction, args.seed + n)
        write_json(path, noisy)
        injected += [{**e, "split": split} for e in errors]
    settings = ["--folds", str(args.folds), "--epochs", str(args.epochs), "--device", "cpu"]
    extra = (
        ["--from-scratch"]
        if "--from-scratch"
        in subprocess.run(py + ["label-issues", "--help"], cwd=project, capture_output=True, text=True).stdout
        else []
    )
    subprocess.run(py + ["label-issues", *settings, *extra], cwd=project, check=True)
    out = project / "runs" / exp.exp_name / "label_issues"
    scores = json.loads((out / "label_scores.json").read_text())
    issues = json.loads((out / "issues.json").read_text())
    ours = issues + [r for r in scores["labels"] if r["type"] == "ok"]  # issues first, then the rest

    # The baselines rank the same candidates from the same fold predictions.
    from yft.evaluate.label_issues.predictions import attach, labelled_images

    images = labelled_images(
        exp, [s for s, c in (("train", args.train), ("val", args.val), ("test", args.test)) if c]
    )
    preds = {}
    for fold in sorted((out / "folds").glob("fold_*/predictions.json")):
        preds.update({int(k): v for k, v in json.loads(fold.read_text()).items()})
    attach(images, [preds[n] for n in range(len(images))])
    baseline = confidence_baseline(images, list(exp.class_names))
    shuffled = [baseline[i] for i in np.random.default_rng(args.seed).permutation(len(baseline))]

    # Image ids are unique across the sample data's splits, so (image id, annotation id) is a key.
    results = {
        name: recovery(ranking, injected)
        for name, ranking in (("ours", ours), ("confidence", baseline), ("random", shuffled))
    }
    print(
        f"\n{len(injected)} injected errors ({args.fraction:.0%} of boxes per kind), {args.folds} folds x "
        f"{args.epochs} epochs, yolox-nano {args.size}px"
    )
    print("| ranking | precision@N | recall@N | missing | wrong class | misplaced | spurious |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        kinds = " | ".join(
            f"{r['per_kind'][k]['recall']:.2f}" for k in ("missing", "wrong_class", "misplaced", "spurious")
        )
        print(f"| {name} | {r['precision_at_n']:.2f} | {r['recall_at_n']:.2f} | {kinds} |")
    (out / "benchmark.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
