"""Benchmark: COCO evaluation of the same detections by pycocotools and by the generated
project's evaluator (template/{{cookiecutter.project_slug}}/yft/evaluate/engine.py), in one run.

    python benchmarks/eval_bench.py                      # 5,000 images, ~300k detections
    python benchmarks/eval_bench.py --images 1000 --min-ratio 0

Measures evaluate() + accumulate() (loadRes, the same JSON-to-index step for everyone, is
reported apart), checks that all 12 summary numbers are identical to pycocotools', and exits
non-zero when they differ or when our engine is less than --min-ratio times faster.
Speed targets are ratios against pycocotools measured in the same process, never absolute times.
"""

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent / "template" / "{{cookiecutter.project_slug}}"
sys.path.insert(0, str(PROJECT))

from yft.evaluate.engine import _evaluator_class, available_engines, make_gt  # noqa: E402


def synthetic(n_images, dets_per_image, n_classes=20, seed=0):
    """GT boxes (~4.5 per image, some crowd) and detections: jittered copies and clutter."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 640, "height": 480})
        boxes = []
        for _ in range(rng.integers(1, 9)):
            w, h = rng.uniform(4, 320, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.integers(1, n_classes + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.02),
                }
            )
            boxes.append((x, y, w, h, c))
        for _ in range(int(rng.integers(dets_per_image // 2, 3 * dets_per_image // 2 + 1))):
            if rng.random() < 0.5:
                x, y, w, h, c = boxes[rng.integers(len(boxes))]
                x, y = x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h)
                w, h = w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)
                if rng.random() < 0.1:
                    c = int(rng.integers(1, n_classes + 1))
            else:
                w, h = rng.uniform(4, 320, 2)
                x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
                c = int(rng.integers(1, n_classes + 1))
            dets.append(
                {
                    "image_id": i,
                    "category_id": c,
                    "score": round(float(rng.random()), 4),
                    "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                }
            )
    cats = [{"id": c, "name": f"class{c}"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def timed_eval(engine, dataset, dets):
    """(stats, seconds for loadRes, seconds for evaluate + accumulate)."""
    _, evaluator_class = _evaluator_class(engine)
    gt = make_gt(dataset, engine)
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        dt = gt.loadRes([dict(d) for d in dets])
        load = time.perf_counter() - start
        kwargs = {"print_function": lambda *a, **k: None, "separate_eval": True} if engine == "faster" else {}
        ev = evaluator_class(gt, dt, "bbox", **kwargs)
        start = time.perf_counter()
        ev.evaluate()
        ev.accumulate()
        seconds = time.perf_counter() - start
        ev.summarize()
    return np.asarray(ev.stats), load, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per engine")
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=5.0,
        help="fail when ours is less than this many times faster (0: never)",
    )
    args = parser.parse_args(argv)

    dataset, dets = synthetic(args.images, args.dets_per_image)
    print(f"{len(dataset['images'])} images, {len(dataset['annotations'])} GT boxes, {len(dets)} detections")
    engines = available_engines()
    ours = engines[0]
    rows = {}
    for engine in ["pycocotools"] + [e for e in engines if e != "pycocotools"]:
        runs = [timed_eval(engine, dataset, dets) for _ in range(args.repeats)]
        stats = runs[0][0]
        rows[engine] = (stats, min(r[1] for r in runs), min(r[2] for r in runs))
    ref_stats, _, ref_seconds = rows["pycocotools"]
    print(f"{'engine':<12} {'loadRes s':>9} {'eval+acc s':>10} {'speed-up':>8}  12 stats identical")
    failed = False
    for engine, (stats, load, seconds) in rows.items():
        same = bool(np.array_equal(stats, ref_stats))
        failed |= not same
        print(f"{engine:<12} {load:9.2f} {seconds:10.2f} {ref_seconds / seconds:7.1f}x  {same}")
    ratio = ref_seconds / rows[ours][2]
    print(
        f"ours ({ours}, what yft's evaluator uses): {ratio:.1f}x faster than pycocotools on "
        f"evaluate + accumulate; mAP50:95 {rows[ours][0][0]:.6f} vs {ref_stats[0]:.6f}"
    )
    if ours == "pycocotools":
        print("no fast engine installed (pip install faster-coco-eval)")
        failed = True
    if args.min_ratio and ratio < args.min_ratio:
        print(f"FAIL: speed-up {ratio:.1f}x is below {args.min_ratio}x")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
