"""`invoke release`: the finetuning guide's final deployment checklist, as a gate.

Checks (thresholds are Exp settings, see "evaluation and deployment" in yft/exp.py):
  accuracy    mAP50:95 on the test split >= release_min_map
  speed       p50 end-to-end latency on release_latency_backend at release_latency_batch
              <= release_max_latency_ms
  size        the deployed model file (ONNX, else the weights) <= release_max_model_mb
  robustness  a robustness run exists (runs/<exp>/robustness_<split>/robustness.json, from
              `invoke robustness`; required when release_require_robustness)
All checks run; if any misses, the list of misses is printed and nothing is written. Otherwise
runs/<exp>/release/v<N>/ is written in one step (built aside, then renamed): weights, ONNX
(+ parity report), TensorRT engine (+ sidecar) if built, metrics, checks, and MODEL_CARD.md.
"""

import datetime
import re
import shutil
from pathlib import Path

from yft.io import write_json
from yft.project import UserError, relative, run_dir
from yft.runs import runs_root


def robustness_report(exp, ckpt):
    """The newest robustness results of this run, or None."""
    # `invoke robustness` writes runs/<exp>/robustness_<split>/robustness.json; a robustness/
    # folder next to the checkpoint counts too.
    candidates = sorted(runs_root(exp).glob("robustness*/robustness.json"))
    for folder in (Path(ckpt).parent,):
        candidates += [folder / "robustness" / "robustness.json", folder / "robustness.json"]
    found = [p for p in candidates if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def data_stats(exp):
    """Images and boxes per class for each split that exists."""
    from yft.data.coco_io import annotation_path, read_json

    stats = {}
    for split in ("train", "val", "test"):
        path = annotation_path(exp, split)
        if not path.is_file():
            continue
        coco = read_json(path)
        names = {c["id"]: c["name"] for c in coco.get("categories", [])}
        boxes = {}
        for ann in coco.get("annotations", []):
            name = names.get(ann["category_id"], str(ann["category_id"]))
            boxes[name] = boxes.get(name, 0) + 1
        stats[split] = {
            "images": len(coco.get("images", [])),
            "boxes": sum(boxes.values()),
            "boxes_per_class": boxes,
        }
    return stats


def next_version(folder):
    taken = [int(m.group(1)) for p in folder.glob("v*") if (m := re.fullmatch(r"v(\d+)", p.name))]
    return f"v{max(taken, default=0) + 1}"


def gate(exp, device, ckpt, batch_size=8):
    """Run every check. Returns (checks, evidence); checks = [{name, ok, detail}]."""
    from yft.deploy.bench import bench_images, measure
    from yft.evaluate.run import evaluate_backend
    from yft.inference import TorchBackend, load_model, make_backend

    ckpt = Path(ckpt)
    onnx_path, engine_path = ckpt.with_suffix(".onnx"), ckpt.with_suffix(".engine")
    checks, evidence = [], {}

    def check(name, ok, detail):
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    try:
        metrics, _ = evaluate_backend(
            TorchBackend(load_model(exp, ckpt), device), exp, "test", device, batch_size, progress=False
        )
        evidence["metrics"] = metrics
        value = metrics["mAP50_95"] or 0.0
        check(
            "accuracy",
            value >= exp.release_min_map,
            f"test mAP50:95 {value:.4f} (minimum {exp.release_min_map})",
        )
    except UserError as err:
        check("accuracy", False, f"cannot evaluate on the test split: {err}")

    backend_name, bs = exp.release_latency_backend, exp.release_latency_batch
    try:
        path = {"torch": ckpt, "onnx": onnx_path, "trt": engine_path}.get(backend_name, ckpt)
        backend, _ = make_backend(exp, path, backend_name, device)
        row = measure(backend, exp, bench_images(exp, 16), bs, device=device)
        evidence["speed"] = row
        check(
            "speed",
            row["p50_ms"] <= exp.release_max_latency_ms,
            f"{backend_name} batch {bs}: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms "
            f"(maximum {exp.release_max_latency_ms} ms)",
        )
    except UserError as err:
        check("speed", False, f"cannot measure {backend_name} at batch {bs}: {err}")

    model_file = onnx_path if onnx_path.is_file() else ckpt
    size_mb = model_file.stat().st_size / 2**20
    evidence["model_file"], evidence["size_mb"] = model_file, size_mb
    check(
        "size",
        size_mb <= exp.release_max_model_mb,
        f"{model_file.name} {size_mb:.2f} MB (maximum {exp.release_max_model_mb} MB)",
    )

    robustness = robustness_report(exp, ckpt)
    evidence["robustness"] = robustness
    if robustness:
        check("robustness", True, f"robustness run found: {relative(robustness)}")
    else:
        check(
            "robustness",
            not exp.release_require_robustness,
            "no robustness run found (`invoke robustness` writes runs/<exp>/robustness_<split>/robustness.json)"
            + ("" if exp.release_require_robustness else "; not required by the Exp"),
        )
    evidence["onnx"] = onnx_path if onnx_path.is_file() else None
    evidence["engine"] = engine_path if engine_path.is_file() else None
    return checks, evidence


def model_card(exp, version, checks, evidence, stats):
    """MODEL_CARD.md text."""
    metrics = evidence.get("metrics") or {}

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}"

    lines = [
        f"# {exp.exp_name} {version}",
        "",
        f"YOLOX `{exp.model_name}` at {exp.test_size[0]}x{exp.test_size[1]} px, finetuned with this project "
        f"(released {datetime.date.today().isoformat()}).",
        "",
        "## Classes",
        "",
    ]
    lines += [
        f"{i}. `{name}` (category id {cid})"
        for i, (name, cid) in enumerate(zip(exp.class_names, exp.category_ids()))
    ]
    lines += ["", "## Data", "", "| split | images | boxes |", "| --- | ---: | ---: |"]
    lines += [f"| {s} | {v['images']} | {v['boxes']} |" for s, v in stats.items()]
    lines += [
        "",
        "## Metrics (test split)",
        "",
        f"mAP50:95 {pct(metrics.get('mAP50_95'))}, mAP50 {pct(metrics.get('mAP50'))}, "
        f"mAP75 {pct(metrics.get('mAP75'))} on {metrics.get('num_images', 0)} images.",
        "",
        "| class | AP50:95 | AP50 | test boxes |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in (metrics.get("per_class") or {}).items():
        lines.append(f"| {name} | {pct(row['AP50_95'])} | {pct(row['AP50'])} | {row['num_gt']} |")
    speed = evidence.get("speed")
    lines += ["", "## Speed", ""]
    lines.append(
        f"{speed['backend']} at batch {speed['batch_size']}: p50 {speed['p50_ms']:.1f} ms, "
        f"p95 {speed['p95_ms']:.1f} ms, {speed['images_per_s']:.1f} images/s, end to end "
        "(letterbox, model, decode, NMS)."
        if speed
        else "not measured."
    )
    lines += ["", "## Release checks", ""] + [
        f"- [{'x' if c['ok'] else ' '}] {c['name']}: {c['detail']}" for c in checks
    ]
    lines += ["", "## Files", "", "- `weights.pth`: the checkpoint (PyTorch)"]
    if evidence.get("onnx"):
        lines.append(
            "- `model.onnx`: ONNX, class names and preprocessing in its metadata; "
            "`model.onnx.parity.json`: its check against torch"
        )
    if evidence.get("engine"):
        lines.append(
            "- `model.engine`: TensorRT engine; `model.engine.json`: its precision, TensorRT version, GPU "
            "(an engine runs only on the GPU model and TensorRT version it was built with)"
        )
    lines += [
        "- `metrics.json`, `checks.json`",
        "",
        "## Preprocessing",
        "",
        "BGR image letterboxed to the input size (top-left, pad 114), CHW float32, no normalisation; "
        "boxes map back by dividing by the resize ratio.",
        "",
        "## Known limits",
        "",
    ]
    limits = [
        f"Trained and evaluated only on `{Path(exp.data_dir).name}`; expect lower accuracy on other cameras, "
        "scenes or object sizes.",
        f"Detects only the {len(exp.class_names)} classes above.",
        f"Input is resized to {exp.test_size[0]}x{exp.test_size[1]}: objects only a few pixels across "
        "after resizing are often missed.",
    ]
    if not evidence.get("robustness"):
        limits.append(
            "No robustness run was found: behaviour under blur, noise, lighting changes and "
            "occlusion is untested."
        )
    missing = [s for s in ("train", "val", "test") if s not in stats]
    if missing:
        limits.append(f"Split(s) without annotations: {', '.join(missing)}.")
    lines += [f"- {text}" for text in limits]
    return "\n".join(lines) + "\n"


def release(exp, device, ckpt=None, version=None, batch_size=8):
    """Check the gate; on success write the release folder and return its path."""
    from yft.inference import default_checkpoint

    ckpt = Path(ckpt) if ckpt else default_checkpoint(exp)
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: checkpoint not found")
    checks, evidence = gate(exp, device, ckpt, batch_size)
    for c in checks:
        print(f"{'pass' if c['ok'] else 'FAIL'}  {c['name']:<10} {c['detail']}")
    misses = [c["name"] for c in checks if not c["ok"]]
    if misses:
        raise UserError(
            f"release blocked: {len(misses)} of {len(checks)} checks missed ({', '.join(misses)}); "
            "fix them or change the release_* thresholds in the Exp"
        )

    root = run_dir(exp, "release")
    version = version or next_version(root)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", version):
        raise UserError(f"--version {version}: use letters, digits, '.', '_' or '-'")
    final = root / version
    if final.exists():
        raise UserError(f"{final}: this release already exists; pick another --version")
    staging = root / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copy2(ckpt, staging / "weights.pth")
        for key, name in (("onnx", "model.onnx"), ("engine", "model.engine")):
            src = evidence.get(key)
            if src:
                shutil.copy2(src, staging / name)
                for side in (".parity.json", ".json"):
                    if Path(str(src) + side).is_file():
                        shutil.copy2(str(src) + side, staging / (name + side))
        metrics = dict(evidence.get("metrics") or {})
        metrics["speed_release"] = evidence.get("speed")
        write_json(staging / "metrics.json", metrics, indent=2)
        write_json(
            staging / "checks.json",
            {
                "version": version,
                "checkpoint": relative(ckpt),
                "checks": checks,
                "robustness": relative(evidence["robustness"]) if evidence["robustness"] else None,
            },
            indent=2,
        )
        stats = data_stats(exp)
        (staging / "MODEL_CARD.md").write_text(
            model_card(exp, version, checks, evidence, stats), encoding="utf-8"
        )
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(
        f"release {version} written to {relative(final)}: "
        + ", ".join(sorted(p.name for p in final.iterdir()))
    )
    return final
