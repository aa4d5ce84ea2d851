"""`invoke export-onnx` and `invoke predict`."""

from pathlib import Path

from yft.deploy.onnx_export import check_parity, export_onnx
from yft.deploy.predict import predict
from yft.inference import default_checkpoint, load_model, make_backend
from yft.project import relative


def run_export_onnx(exp, ckpt, output, opset, dynamic_batch):
    ckpt = Path(ckpt) if ckpt else default_checkpoint(exp)
    output = Path(output) if output else ckpt.with_suffix(".onnx")
    model = load_model(exp, ckpt)
    export_onnx(model, exp, output, opset, dynamic_batch)
    box_diff, score_diff = check_parity(model, exp, output)
    print(f"wrote {relative(output)} ({output.stat().st_size / 2**20:.1f} MB); onnxruntime vs "
          f"torch on validation images: boxes within {box_diff:.1e} px, scores within {score_diff:.1e}")
    return output, (box_diff, score_diff)


def run_predict(exp, device, source, ckpt, backend_name, conf, output):
    backend, path = make_backend(exp, ckpt, backend_name, device)
    out_dir = Path(output) if output else path.parent / "predictions"
    written, skipped = predict(backend, exp, source, out_dir, conf)
    for target, dets in written:
        names = [exp.class_names[int(c)] for c in dets[:, 5]]
        summary = ", ".join(f"{n}" for n in names[:8]) + (" ..." if len(names) > 8 else "")
        print(f"{relative(target)}: {len(dets)} detections{': ' + summary if names else ''}")
    for path in skipped:
        print(f"skipped {path}: not a readable image")
    print(f"{len(written)} images written to {relative(out_dir)}, {len(skipped)} skipped")
    if not written:
        from yft.project import UserError
        raise UserError(f"{source}: no readable image")
    return written, skipped
