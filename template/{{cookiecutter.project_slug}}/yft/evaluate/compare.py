"""`invoke compare`: model A vs model B on the same images, with a paired bootstrap.

Both models' detections are matched to the ground truth once (matching.py); each bootstrap
sample draws the images with replacement, the same draw for A and B (paired), and recomputes
mAP of both from the matches with per-image weights. From the differences B - A come a 95%
percentile interval and a two-sided p-value (the shifted bootstrap null: how often a
difference at least as far from the observed one appears when nothing differs).
"""

from pathlib import Path

import numpy as np

from yft.data.coco_io import read_json
from yft.data.precheck import check_split
from yft.evaluate.matching import accumulate, ap_from_precision, flatten, match_dataset
from yft.io import write_atomic, write_json
from yft.project import UserError, relative, run_dir
from yft.runs import output_dir


def load_side(exp, device, source, split, batch_size, progress=True):
    """(label, COCO results) from an `invoke eval` run folder or a checkpoint / .onnx file."""
    path = Path(source)
    if path.is_dir():
        metrics_file, dets_file = path / "metrics.json", path / "detections.json"
        if not dets_file.is_file():
            raise UserError(f"{dets_file}: not found (a run folder is what `invoke eval` writes)")
        metrics = read_json(metrics_file) if metrics_file.is_file() else {}
        if metrics.get("split") not in (None, split):
            raise UserError(
                f"{metrics_file}: evaluated on the {metrics['split']} split, not {split} "
                f"(use --split {metrics['split']} or evaluate it on {split})"
            )
        return relative(path), read_json(dets_file)
    if not path.is_file():
        raise UserError(f"{path}: neither an eval run folder nor a checkpoint")
    from yft.evaluate.run import evaluate_backend
    from yft.inference import make_backend

    backend, _ = make_backend(exp, path, "onnx" if path.suffix == ".onnx" else "torch", device)
    _, results = evaluate_backend(backend, exp, split, device, batch_size, progress)
    return relative(path), results


def paired_bootstrap(flat_a, flat_b, samples=1000, seed=0):
    """Observed (A, B) mAP50:95 / mAP50 / per-class AP, and bootstrap differences B - A."""
    n = flat_a.num_gt.shape[0]
    rng = np.random.default_rng(seed)
    obs = [ap_from_precision(accumulate(f)) for f in (flat_a, flat_b)]
    diffs, diffs50, per_class = [], [], []
    for _ in range(samples):
        weights = rng.multinomial(n, np.full(n, 1 / n)).astype(np.float64)
        a, b = (ap_from_precision(accumulate(f, weights)) for f in (flat_a, flat_b))
        if a[0] is None:  # a resample without any ground truth
            continue
        diffs.append(b[0] - a[0])
        diffs50.append(b[1] - a[1])
        per_class.append(b[2] - a[2])
    return obs, np.array(diffs), np.array(diffs50), np.array(per_class)


def _interval(observed, diffs):
    if not len(diffs):
        return {"delta": observed, "ci95": None, "p_value": None}
    low, high = np.percentile(diffs, [2.5, 97.5])
    p = float(np.mean(np.abs(diffs - observed) >= abs(observed) - 1e-12))
    return {
        "delta": round(float(observed), 5),
        "ci95": [round(float(low), 5), round(float(high), 5)],
        "p_value": round(max(p, 1 / len(diffs)), 4),
    }


def verdict(stat, alpha=0.05):
    if stat["p_value"] is None:
        return "no verdict (no ground truth to compare on)"
    if stat["p_value"] < alpha and stat["ci95"][0] * stat["ci95"][1] > 0:
        return f"{'B' if stat['delta'] > 0 else 'A'} better, significant"
    return "no significant difference"


def compare(
    exp, device, a, b, split="test", batch_size=8, samples=1000, seed=0, out=None, progress=True, force=False
):
    """Compare two models on a split; writes compare.json, compare.md and per_class_delta.png."""
    from yft.evaluate.plots import bar_png

    if split not in ("val", "test"):
        raise UserError(f"--split {split}: use val or test")
    if samples < 100:
        raise UserError(f"--samples {samples}: use at least 100 bootstrap samples")
    dataset = check_split(exp, split)
    if not any(not ann.get("iscrowd", 0) for ann in dataset["annotations"]):
        raise UserError(f"the {split} split has no ground-truth boxes: nothing to compare on")
    ids, names = exp.category_ids(), list(exp.class_names)
    out = output_dir(run_dir(exp, f"compare_{split}"), out, force)  # before the models run
    (label_a, dets_a), (label_b, dets_b) = (
        load_side(exp, device, s, split, batch_size, progress) for s in (a, b)
    )
    image_ids = {im["id"] for im in dataset["images"]}
    for label, dets in ((label_a, dets_a), (label_b, dets_b)):
        if any(d["image_id"] not in image_ids for d in dets):
            raise UserError(f"{label}: detections for images outside the {split} split")
    flats = [flatten(match_dataset(dataset, d, ids), len(ids)) for d in (dets_a, dets_b)]
    (obs_a, obs_b), diffs, diffs50, per_class_diffs = paired_bootstrap(*flats, samples, seed)
    result = {
        "split": split,
        "num_images": len(dataset["images"]),
        "samples": samples,
        "seed": seed,
        "a": {"source": label_a, "mAP50_95": obs_a[0], "mAP50": obs_a[1]},
        "b": {"source": label_b, "mAP50_95": obs_b[0], "mAP50": obs_b[1]},
        "mAP50_95": _interval(obs_b[0] - obs_a[0], diffs),
        "mAP50": _interval(obs_b[1] - obs_a[1], diffs50),
        "per_class": {},
    }
    for k, name in enumerate(names):
        if np.isnan(obs_a[2][k]):
            continue  # no ground truth of this class
        column = per_class_diffs[:, k] if len(per_class_diffs) else np.zeros(0)
        column = column[~np.isnan(column)]
        result["per_class"][name] = {
            "A": round(float(obs_a[2][k]), 5),
            "B": round(float(obs_b[2][k]), 5),
            **_interval(float(obs_b[2][k] - obs_a[2][k]), column),
        }
    result["verdict"] = verdict(result["mAP50_95"])
    rows = list(result["per_class"].items())
    if rows:
        bar_png(
            [n for n, _ in rows],
            {"B - A": [r["delta"] for _, r in rows]},
            out / "per_class_delta.png",
            "AP50:95 difference per class (B - A)",
            "AP50:95 difference",
        )
    write_atomic(out / "compare.md", markdown(result).encode("utf-8"))
    write_json(out / "compare.json", result, indent=2)
    return result, out


def markdown(r):
    m = r["mAP50_95"]
    ci = "n/a" if m["ci95"] is None else f"[{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}]"
    lines = [
        f"# A/B comparison on the {r['split']} split ({r['num_images']} images)",
        "",
        f"A: `{r['a']['source']}`  ",
        f"B: `{r['b']['source']}`",
        "",
        f"**{r['verdict']}**: mAP50:95 B - A = {m['delta']:+.4f}, 95% interval {ci}, "
        f"p = {m['p_value']} (paired bootstrap over images, {r['samples']} samples)",
        "",
        "| class | A AP50:95 | B AP50:95 | B - A | 95% interval | p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in r["per_class"].items():
        ci = "n/a" if c["ci95"] is None else f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"
        lines.append(f"| {name} | {c['A']:.3f} | {c['B']:.3f} | {c['delta']:+.3f} | {ci} | {c['p_value']} |")
    lines += ["", "![per-class difference](per_class_delta.png)", ""]
    return "\n".join(lines)


def summary_line(r):
    m = r["mAP50_95"]
    ci = "" if m["ci95"] is None else f", 95% CI [{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}], p={m['p_value']}"
    return (
        f"A mAP50:95 {r['a']['mAP50_95']:.4f}  B {r['b']['mAP50_95']:.4f}  "
        f"B-A {m['delta']:+.4f}{ci}\n{r['verdict']}"
    )
