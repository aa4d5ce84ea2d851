"""Export to ONNX with torch.onnx (YOLOX's own exporter no longer runs on current torch).

The graph decodes boxes itself: its output is (batch, anchors, 5 + classes) with
(cx, cy, w, h, objectness, class scores...) in input pixels, the format `yft.inference.decode`
turns into boxes. Class names, input size and preprocessing go into the model's metadata.
After export the ONNX model runs in onnxruntime on real validation images and must match torch.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from yft.data.coco_io import write_atomic
from yft.project import UserError

PREPROCESSING = "BGR uint8 image letterboxed to input_size (top-left, pad 114), CHW float32, no normalisation"


def sample_inputs(exp, count=4):
    """Up to `count` letterboxed validation images (random noise if the split is empty)."""
    import cv2

    from yft.data.coco_io import image_dir
    from yft.inference import letterbox

    files = sorted(p for p in image_dir(exp, "val").glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    images = [letterbox(img, exp.test_size)[0] for img in (cv2.imread(str(p)) for p in files[:count]) if img is not None]
    if not images:
        rng = np.random.default_rng(0)
        images = [rng.uniform(0, 255, (3, *exp.test_size)).astype(np.float32)]
    return np.stack(images)


def export_onnx(model, exp, path, opset=None, dynamic_batch=True):
    """Write `path` (atomically) and return it."""
    import onnx

    model = model.cpu().eval()
    model.head.decode_in_inference = True
    dummy = torch.zeros(1, 3, *exp.test_size)
    tmp = Path(path).with_suffix(".onnx.tmp")
    dynamic = {"images": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is deliberate: it needs no onnxscript and
        # handles YOLOX's decode; torch warns that it is the legacy path.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, dummy, str(tmp), input_names=["images"], output_names=["output"],
                          opset_version=opset or exp.onnx_opset, dynamic_axes=dynamic, dynamo=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    onnx.checker.check_model(proto)
    metadata = {"class_names": json.dumps(list(exp.class_names), ensure_ascii=False),
                "input_size": json.dumps(list(exp.test_size)), "preprocessing": PREPROCESSING,
                "exp_name": exp.exp_name, "output": "cx, cy, w, h, objectness, class scores"}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    write_atomic(path, proto.SerializeToString())
    return Path(path)


def check_parity(model, exp, onnx_path, box_px=1e-2, box_rel=1e-4, score_abs=1e-4):
    """Run torch and onnxruntime on the same validation images and compare the outputs.

    Box channels (pixels) must agree within box_px + box_rel * |value|, score channels
    (probabilities) within score_abs; float32 rounding in the decode step stays far below.
    Returns (max box difference in pixels, max score difference); raises UserError otherwise.
    """
    from yft.inference import OnnxBackend

    images = sample_inputs(exp)
    model = model.cpu().eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = OnnxBackend(onnx_path)(images).numpy()
    diff = np.abs(expected - got)
    box_diff, score_diff = float(diff[..., :4].max()), float(diff[..., 4:].max())
    box_ok = (diff[..., :4] <= box_px + box_rel * np.abs(expected[..., :4])).all()
    if not (box_ok and score_diff <= score_abs):
        raise UserError(f"{onnx_path}: onnxruntime output differs from torch (boxes up to "
                        f"{box_diff:.2e} px, scores up to {score_diff:.2e})")
    return box_diff, score_diff
