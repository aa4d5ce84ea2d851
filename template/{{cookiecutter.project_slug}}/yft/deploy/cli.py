"""`invoke export-onnx`, `export-trt`, `predict`, `bench` and `release`."""

import json
import platform
from pathlib import Path

from yft.deploy.onnx_export import check_parity, export_onnx
from yft.deploy.predict import predict
from yft.inference import default_checkpoint, load_model, make_backend
from yft.io import atomic_path, write_json
from yft.project import UserError, relative


def parity_path(onnx_path):
    """best.onnx -> best.onnx.parity.json (the export's parity report)"""
    return Path(str(onnx_path) + ".parity.json")


def trt_onnx_path(ckpt):
    """best.pth -> best.trt.onnx: the ONNX graph export-trt builds its engine from."""
    return Path(ckpt).with_suffix(".trt.onnx")


def run_export_onnx(exp, ckpt, output, opset, dynamic_batch, decode=True, nms=None, force=False):
    """Export, check against torch, write the parity report. Returns (path, (box, score diff)).
    An existing model at `output` is replaced only with force, and only by an export that passed."""
    ckpt = Path(ckpt) if ckpt else default_checkpoint(exp)
    output = Path(output) if output else ckpt.with_suffix(".onnx")
    if output.resolve() == ckpt.resolve():  # --force replaces earlier exports, never the weights
        raise UserError(f"{relative(output)}: is the checkpoint being exported; choose another --output")
    if output.exists() and not force:
        raise UserError(
            f"{relative(output)}: exists (an earlier export); pass --force to replace it, "
            "or --output another path"
        )
    model = load_model(exp, ckpt)
    # Exported and checked under a temporary name: a failed parity check leaves the old model in place.
    with atomic_path(output) as staged:
        base = export_onnx(model, exp, staged, opset, dynamic_batch, decode, nms)
        report = check_parity(model, exp, staged, base, decode)
    report.update(checkpoint=relative(ckpt), onnx=relative(output), nms=nms, decode=decode)
    write_json(parity_path(output), report, indent=2)
    graph = f"{'decoded' if decode else 'raw head'}{', NMS ' + nms if nms else ''}"
    print(
        f"wrote {relative(output)} ({output.stat().st_size / 2**20:.1f} MB, {graph}); onnxruntime vs "
        f"torch on {report['images']} validation images: boxes within {report['box_diff']:.1e} "
        f"({report['box_rel_diff']:.1e} relative), "
        f"scores within {report['score_diff']:.1e}"
    )
    if report["map_torch"] is not None:
        print(
            f"mAP50:95 on {report['map_images']} validation images: torch {report['map_torch']:.4f}, "
            f"onnx {report['map_onnx']:.4f}"
        )
    for note in report["notes"]:
        print(f"note: {note}")
    return output, (report["box_diff"], report["score_diff"])


def run_export_trt(
    exp,
    device,
    ckpt,
    onnx,
    output,
    fp16=False,
    int8=False,
    calib_images=200,
    min_batch=1,
    opt_batch=1,
    max_batch=8,
    workspace_gb=4.0,
    nms=None,
    force=False,
):
    """ONNX (exported from the checkpoint unless given) -> TensorRT engine + sidecar -> val mAP."""
    from yft.deploy import trt
    from yft.deploy.accuracy import split_map
    from yft.inference import TrtBackend, onnx_metadata

    if nms not in (None, "trt"):
        raise UserError(f"--nms {nms}: an engine takes TensorRT's own NMS only (--nms trt)")
    if onnx:
        onnx_path = Path(onnx)
        if not onnx_path.is_file():
            raise UserError(f"{onnx_path}: ONNX model not found")
        meta = onnx_metadata(onnx_path)
        if meta.get("class_names") and meta["class_names"] != json.dumps(
            list(exp.class_names), ensure_ascii=False
        ):
            raise UserError(f"{onnx_path}: its class names are not this Exp's; export it again")
        if meta.get("nms") == "onnx":
            raise UserError(
                f"{onnx_path}: has ONNX NonMaxSuppression inside (variable-size output); "
                "export with --nms trt or without --nms for TensorRT"
            )
        report = None
    # Before anything is written: without TensorRT or a GPU nothing of the run changes.
    trt.require_tensorrt(onnx_path if onnx else None)
    if not onnx:
        ckpt = Path(ckpt) if ckpt else default_checkpoint(exp)
    engine_path = Path(output) if output else (onnx_path if onnx else ckpt).with_suffix(".engine")
    if engine_path.exists() and not force:
        raise UserError(
            f"{relative(engine_path)}: exists (an earlier build); pass --force to replace it, "
            "or --output another path"
        )
    if not onnx:
        # A graph of its own (best.trt.onnx), rebuilt on every call: with --nms trt it holds a
        # TensorRT-only op, and it must never replace the best.onnx that `predict --backend onnx` runs.
        onnx_path, _ = run_export_onnx(exp, ckpt, trt_onnx_path(ckpt), None, True, True, nms, force=True)
        report = json.loads(parity_path(onnx_path).read_text(encoding="utf-8"))
    calib = None
    if int8:
        calib = trt.CalibrationBatches(trt.calibration_files(exp, calib_images), exp.test_size, opt_batch)
    calib_cache = engine_path.with_suffix(".calib")
    if int8 and calib_cache.is_file():
        print(f"reusing INT8 calibration cache {relative(calib_cache)} (delete it to recalibrate)")
    version = trt.build_engine(
        onnx_path,
        engine_path,
        exp.test_size,
        fp16=fp16,
        int8=int8,
        calib=calib,
        calib_cache=calib_cache,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        workspace_gb=workspace_gb,
        timing_cache=engine_path.parent / "trt_timing.cache",
    )
    info = trt.sidecar(
        exp,
        onnx_path,
        trt.precision_name(fp16, int8),
        (min_batch, opt_batch, max_batch),
        version,
        trt.describe_gpu(),
        len(calib.files) if calib else 0,
    )
    trt.write_sidecar(engine_path, info)
    print(
        f"wrote {relative(engine_path)} ({engine_path.stat().st_size / 2**20:.1f} MB) and "
        f"{relative(trt.sidecar_path(engine_path))}: {trt.engine_summary(info)}"
    )

    engine_map = split_map(
        TrtBackend(engine_path, device), exp, "val", exp.parity_images, batch_size=min(8, max_batch)
    )
    torch_map = report["map_torch"] if report else None
    info["val_mAP50_95"], info["torch_val_mAP50_95"] = engine_map["mAP50_95"], torch_map
    trt.write_sidecar(engine_path, info)
    shown = "n/a" if torch_map is None else f"{torch_map:.4f}"
    print(
        f"mAP50:95 on {engine_map['num_images']} validation images: TensorRT {info['precision']} "
        f"{engine_map['mAP50_95'] or 0:.4f}, torch {shown}"
    )
    return engine_path, info


def run_predict(
    exp, device, source, ckpt, backend_name, conf, output, nms=None, save_json=False, force=False
):
    """Annotated images/videos (and with save_json a COCO-results JSON) in a predictions folder
    (a new one on a rerun, yft.runs.output_dir). Returns (written, skipped paths)."""
    from yft.runs import output_dir

    backend, path = make_backend(exp, ckpt, backend_name, device)
    out_dir = output_dir(path.parent / "predictions", output, force)

    def show(target, dets):
        names = [exp.class_names[int(c)] for c in dets[:, 5]]
        summary = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        print(f"{relative(target)}: {len(dets)} detections{': ' + summary if names else ''}")

    written, skipped, rows = predict(backend, exp, source, out_dir, conf, nms, on_result=show)
    for bad, reason in skipped:
        print(f"skipped {relative(bad)}: {reason}")
    if save_json:
        target = out_dir / "predictions.json"
        write_json(target, rows)
        print(f"wrote {relative(target)} ({len(rows)} detections, COCO results format)")
    print(
        f"{len(written)} files written to {relative(out_dir)}, {len(skipped)} skipped, "
        f"{sum(len(d) for _, d in written)} detections"
    )
    if not written:
        raise UserError(f"{source}: no readable image or video")
    return written, [bad for bad, _ in skipped]


def parse_list(text, kind=str, name="list"):
    try:
        items = [kind(x.strip()) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--{name} {text}: expected a comma-separated list like 1,8,32") from None
    if not items or (kind is int and min(items) < 1):
        raise UserError(f"--{name} {text}: expected a comma-separated list like 1,8,32")
    return items


def bench_backends(exp, device, ckpt, names):
    """(backends, skipped): a backend that cannot be built here is skipped with the reason."""
    backends, skipped = [], []
    for name in names:
        if name not in ("torch", "onnx", "trt"):
            raise UserError(f"--backends {name}: use torch, onnx, trt")
        try:
            path = None
            if ckpt and name == "torch":
                path = ckpt
            elif ckpt:
                path = Path(ckpt).with_suffix({"onnx": ".onnx", "trt": ".engine"}[name])
            backends.append(make_backend(exp, path, name, device)[0])
        except UserError as err:
            skipped.append((name, str(err)))
    return backends, skipped


def run_bench(
    exp, device, ckpt, backends="torch,onnx,trt", batch_sizes="1,8,32", output=None, min_time=1.0, force=False
):
    """The table and bench.json (bench2/bench.json, ... on a rerun; an existing --output only
    with force). Returns (rows, skipped)."""
    import torch

    from yft.deploy import bench
    from yft.device import describe
    from yft.project import run_dir
    from yft.runs import output_file

    out = output_file(run_dir(exp, "bench") / "bench.json", output, force)  # before the measuring
    backends_, skipped = bench_backends(exp, device, ckpt, parse_list(backends, str, "backends"))
    if not backends_:
        raise UserError("no backend to benchmark: " + "; ".join(f"{n}: {r}" for n, r in skipped))
    rows = bench.benchmark(
        backends_, exp, parse_list(batch_sizes, int, "batch-sizes"), device=device, min_time=min_time
    )
    context = {
        "model": exp.model_name,
        "input_size": list(exp.test_size),
        "device": describe(device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "end_to_end": "letterbox + model + decode + NMS",
    }
    bench.write_report(out, rows, skipped, context)
    print(bench.format_table(rows, skipped))
    print(f"({context['end_to_end']}, {context['device']}); written to {relative(out)}")
    return rows, skipped


def run_release(exp, device, ckpt, version=None, batch_size=8):
    from yft.deploy.release import release

    return release(exp, device, ckpt, version, batch_size)
