"""`invoke robustness`: mAP when the images are degraded, relative to the clean images.

Corruptions follow the seed guide's lighting / blur / noise list (and ImageNet-C's spirit):
Gaussian blur, motion blur, Gaussian noise, brightness, contrast, JPEG quality and low light,
each at severities 1 (mild) .. 5 (severe). The same images go through the same model and
the same COCO evaluation as `invoke eval`; only the pixels change (boxes stay where they are).
"""

import cv2
import numpy as np
import torch

from yft.data.coco_io import image_dir
from yft.data.precheck import check_split
from yft.evaluate.coco_metrics import coco_metrics, to_coco_results
from yft.inference import decode, letterbox
from yft.io import write_atomic, write_json
from yft.project import UserError, relative, run_dir
from yft.runs import output_dir


def gaussian_blur(img, s, rng):
    sigma = [0.8, 1.5, 2.5, 4.0, 6.0][s - 1]
    return cv2.GaussianBlur(img, (0, 0), sigma)


def motion_blur(img, s, rng):
    length = [5, 9, 15, 21, 29][s - 1]
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    angle = float(rng.uniform(0, 180))
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


def gaussian_noise(img, s, rng):
    sigma = [8, 16, 28, 42, 60][s - 1]
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def brightness(img, s, rng):
    delta = [30, 60, 90, 120, 150][s - 1]
    return np.clip(img.astype(np.int16) + delta, 0, 255).astype(np.uint8)


def contrast(img, s, rng):
    factor = [0.6, 0.45, 0.3, 0.2, 0.12][s - 1]
    mean = img.mean(axis=(0, 1), keepdims=True)
    return np.clip((img - mean) * factor + mean, 0, 255).astype(np.uint8)


def jpeg(img, s, rng):
    quality = [40, 25, 15, 10, 5][s - 1]
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def low_light(img, s, rng):
    """Darker (gamma), with the sensor noise that comes with it."""
    gain, noise = [(0.6, 3), (0.4, 5), (0.25, 7), (0.15, 9), (0.08, 11)][s - 1]
    dark = 255.0 * (img / 255.0) ** 1.5 * gain
    return np.clip(dark + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)


CORRUPTIONS = {
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "gaussian_noise": gaussian_noise,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg": jpeg,
    "low_light": low_light,
}


def corrupt(img, name, severity, seed=0):
    """A corrupted copy of a BGR image (deterministic for a seed)."""
    if name not in CORRUPTIONS:
        raise UserError(f"--corruptions {name}: choose from {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise UserError(f"--severities {severity}: severities go from 1 to 5")
    return CORRUPTIONS[name](img, severity, np.random.default_rng(seed))


def detect_images(backend, exp, images, image_ids, batch_size=8):
    """COCO results for BGR images (any size), through letterbox and decode like `invoke eval`."""
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        prepared = [letterbox(img, exp.test_size) for img in chunk]
        batch = torch.from_numpy(np.stack([p[0] for p in prepared]))
        dets = decode(backend(batch), [p[1] for p in prepared], exp.num_classes, exp.test_conf, exp.nmsthre)
        results += to_coco_results(dets, image_ids[start : start + batch_size], exp.category_ids())
    return results


def robustness(
    exp,
    device,
    ckpt,
    split="val",
    corruptions=None,
    severities=(1, 3, 5),
    batch_size=8,
    backend_name="torch",
    out=None,
    progress=True,
    force=False,
):
    """mAP per corruption and severity, its drop relative to clean; robustness.json/.md/.png."""
    from tqdm import tqdm

    from yft.evaluate.plots import line_png
    from yft.inference import make_backend

    dataset = check_split(exp, split)
    names = list(corruptions or CORRUPTIONS)
    for name in names:
        corrupt(np.zeros((4, 4, 3), np.uint8), name, 1)  # validates names before any work
    for s in severities:
        corrupt(np.zeros((4, 4, 3), np.uint8), names[0], s)
    backend, path = make_backend(exp, ckpt, backend_name, device)
    out = output_dir(run_dir(exp, f"robustness_{split}"), out, force)  # before minutes of work
    folder = image_dir(exp, split)
    images, ids = [], []
    for im in dataset["images"]:
        img = cv2.imread(str(folder / im["file_name"]))
        if img is None:
            raise UserError(f"{folder / im['file_name']}: cannot read the image")
        images.append(img)
        ids.append(im["id"])

    def evaluate(imgs):
        dets = detect_images(backend, exp, imgs, ids, batch_size)
        return coco_metrics(dataset, dets, exp.class_names, exp.category_ids())

    clean = evaluate(images)
    table = {}
    jobs = [(n, s) for n in names for s in severities]
    for n, s in tqdm(jobs, desc="robustness", leave=False, disable=not progress):
        m = evaluate([corrupt(img, n, s, seed=i) for i, img in enumerate(images)])
        rel = None
        if m["mAP50_95"] is not None and clean["mAP50_95"]:
            rel = round(m["mAP50_95"] / clean["mAP50_95"] - 1, 4)
        table.setdefault(n, {})[str(s)] = {
            "mAP50_95": m["mAP50_95"],
            "mAP50": m["mAP50"],
            "relative_drop": rel,
        }
    result = {
        "split": split,
        "checkpoint": relative(path),
        "num_images": len(images),
        "severities": list(severities),
        "clean": {"mAP50_95": clean["mAP50_95"], "mAP50": clean["mAP50"]},
        "corruptions": table,
        "notes": []
        if clean["mAP50_95"]
        else ["clean mAP50:95 is 0 or undefined: relative drops are undefined"],
    }
    line_png(
        "severity",
        {
            n: (list(severities), [100 * (row[str(s)]["relative_drop"] or 0) for s in severities])
            for n, row in table.items()
        },
        out / "robustness.png",
        f"mAP50:95 change vs clean ({clean['mAP50_95'] or 0:.3f})",
        "change (%)",
    )
    write_atomic(out / "robustness.md", markdown(result).encode("utf-8"))
    write_json(out / "robustness.json", result, indent=2)
    return result, out


def markdown(r):
    sev = r["severities"]
    clean = r["clean"]["mAP50_95"]
    lines = [
        f"# Robustness on the {r['split']} split ({r['num_images']} images)",
        "",
        f"Clean mAP50:95: {'n/a' if clean is None else f'{clean:.4f}'}",
        "",
        "| corruption | " + " | ".join(f"severity {s}" for s in sev) + " |",
        "| --- |" + " --- |" * len(sev),
    ]
    for name, row in r["corruptions"].items():
        cells = []
        for s in sev:
            c = row[str(s)]
            value = "n/a" if c["mAP50_95"] is None else f"{c['mAP50_95']:.3f}"
            drop = "" if c["relative_drop"] is None else f" ({100 * c['relative_drop']:+.0f}%)"
            cells.append(value + drop)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "mAP50:95 per severity, in brackets the change relative to clean.",
        "",
        "![robustness](robustness.png)",
        "",
    ] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines)


def table_text(r):
    lines = [
        f"clean mAP50:95 {r['clean']['mAP50_95'] or 0:.3f}",
        f"{'corruption':<16}" + "".join(f"{'sev ' + str(s):>16}" for s in r["severities"]),
    ]
    for name, row in r["corruptions"].items():
        cells = []
        for s in r["severities"]:
            c = row[str(s)]
            cells.append(
                "n/a"
                if c["mAP50_95"] is None
                else f"{c['mAP50_95']:.3f}"
                + ("" if c["relative_drop"] is None else f" {100 * c['relative_drop']:+.0f}%")
            )
        lines.append(f"{name:<16}" + "".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)
