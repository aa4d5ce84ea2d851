"""Benchmark: the generated project's `yft.data.convert` against globox (a maintained peer).

Generates a YOLO dataset and a Pascal VOC dataset of N images (default 20,000; 64x48 .. 320x240
JPEGs, 1-8 boxes each, 10% negatives), converts both to COCO with ours and with globox in the
same run (each conversion a fresh process, so imports count; median of --repeat runs), checks
that both outputs describe the same boxes, and prints the speed ratio.

Normalisation before comparing (platform facts): globox drops images without a label file and
names YOLO classes "0", "1", ...; both read VOC `xmin` as the left edge (x = xmin, w = xmax - xmin),
so VOC boxes compare as they are.

    python benchmarks/convert_bench.py [--n 20000] [--repeat 3] [--workdir /tmp/yft_bench]

globox is only needed here: `pip install globox`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "template" / "{{cookiecutter.project_slug}}"  # plain Python, importable as is
CLASSES = ["cat", "dog", "bird", "car", "person"]


def generate(root, n, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    images, yolo, voc = root / "images", root / "yolo", root / "voc"
    if (root / "done").exists():
        return images, yolo, voc
    for d in (images, yolo, voc):
        d.mkdir(parents=True, exist_ok=True)
    # classes.txt next to the label folder: globox would read it as a label file
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    boxes = 0
    for i in range(n):
        w, h = int(rng.integers(64, 321)), int(rng.integers(48, 241))
        img = np.full((h, w, 3), int(rng.integers(0, 255)), np.uint8)
        img[::7] = 255 - img[::7]
        name = f"img_{i:06d}"
        cv2.imwrite(str(images / f"{name}.jpg"), img)
        objects, lines = [], []
        if rng.random() >= 0.1:
            for _ in range(int(rng.integers(1, 9))):
                bw, bh = int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                k = int(rng.integers(len(CLASSES)))
                lines.append(f"{k} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}\n")
                objects.append(
                    f"<object><name>{CLASSES[k]}</name><difficult>0</difficult><bndbox>"
                    f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + bw}</xmax>"
                    f"<ymax>{y + bh}</ymax></bndbox></object>"
                )
            (yolo / f"{name}.txt").write_text("".join(lines))
            boxes += len(lines)
        (voc / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>"
        )
    (root / "done").write_text(str(boxes))
    return images, yolo, voc


def timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ours_cmd(fmt, src, images, out):
    return [
        sys.executable,
        "-m",
        "yft.data.convert",
        "--from",
        fmt,
        "--src",
        str(src),
        "--images",
        str(images),
        "--out",
        str(out),
        "--classes",
        ",".join(CLASSES),
        "--force",
    ]


def globox_cmd(fmt, src, images, out):
    if fmt == "yolo":
        load = f"AnnotationSet.from_yolo_v5({str(src)!r}, image_folder={str(images)!r})"
    else:
        load = f"AnnotationSet.from_pascal_voc({str(src)!r})"
    code = f"from globox import AnnotationSet; {load}.save_coco({str(out)!r}, auto_ids=True)"
    return [sys.executable, "-c", code]


def boxes_of(path, fmt, tool):
    coco = json.loads(Path(path).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    out = {}
    for a in coco["annotations"]:
        name = names[a["category_id"]]
        if tool == "globox" and fmt == "yolo":
            name = CLASSES[int(name)]
        x, y, w, h = a["bbox"]
        out.setdefault(files[a["image_id"]], []).append(
            (name, round(x, 1), round(y, 1), round(w, 1), round(h, 1))
        )
    return {k: sorted(v) for k, v in out.items()}, len(coco["images"])


def validate_scaling(images, count=3000):
    sys.path.insert(0, str(PROJECT))
    from yft.data.validate import decode_all

    paths = sorted(str(p) for p in images.glob("*.jpg"))[:count]
    one = time.perf_counter()
    decode_all(paths, workers=1)
    one = time.perf_counter() - one
    every = time.perf_counter()
    decode_all(paths)
    every = time.perf_counter() - every
    return len(paths), one, every


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/yft_bench")
    args = parser.parse_args()
    try:
        import globox  # noqa: F401
    except ImportError:
        sys.exit("globox is not installed: pip install globox (only this benchmark needs it)")
    root = Path(args.workdir) / f"n{args.n}"
    t = time.perf_counter()
    images, yolo, voc = generate(root, args.n)
    print(
        f"dataset: {args.n} images, {(root / 'done').read_text()} boxes in {root} "
        f"({time.perf_counter() - t:.1f} s to generate or find)"
    )
    print(
        f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(timings of a loaded machine are noisy: compare the ratio, measured in the same run)"
    )
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    failed = False
    for fmt, src in (("yolo", yolo), ("voc", voc)):
        times = {"ours": [], "globox": []}
        for _ in range(args.repeat):
            for tool, make in (("ours", ours_cmd), ("globox", globox_cmd)):
                times[tool].append(timed(make(fmt, src, images, root / f"{tool}_{fmt}.json"), env))
        ours, n_ours = boxes_of(root / f"ours_{fmt}.json", fmt, "ours")
        theirs, n_theirs = boxes_of(root / f"globox_{fmt}.json", fmt, "globox")
        same = ours == theirs
        failed |= not same
        o, g = statistics.median(times["ours"]), statistics.median(times["globox"])
        print(
            f"{fmt} -> COCO: ours {o:.2f} s ({n_ours} images: negatives kept), globox {g:.2f} s "
            f"({n_theirs} images); same boxes: {same}; speed ratio {g / o:.1f}x"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    n, one, every = validate_scaling(images)
    print(
        f"validate (full decode + hashes) of {n} JPEGs: 1 process {one:.2f} s, "
        f"{os.cpu_count()} processes {every:.2f} s ({one / every:.1f}x)"
    )
    if failed:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
