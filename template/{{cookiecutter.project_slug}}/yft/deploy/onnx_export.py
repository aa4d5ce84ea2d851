"""Export to ONNX with torch.onnx (YOLOX's own exporter no longer runs on current torch).

By default the graph decodes boxes itself: its output "output" is (batch, anchors, 5 + classes)
with (cx, cy, w, h, objectness, class scores...) in input pixels, the format
`yft.inference.decode` turns into boxes. `decode=False` keeps YOLOX's raw head outputs
(grid offsets and log sizes; `yft.inference.decode_grid` decodes them).

`nms` appends non-maximum suppression to the decoded graph, with YOLOX's semantics (each anchor
keeps its best class, score = objectness x class score, NMS per class):
  "onnx": the standard NonMaxSuppression op (onnxruntime, OpenVINO, ...); one output
          "detections" (K, 7): image index, x1, y1, x2, y2, score, class (input pixels);
  "trt":  TensorRT's EfficientNMS_TRT plugin (domain "TRT"); outputs num_dets (B, 1),
          det_boxes (B, max_det, 4), det_scores (B, max_det), det_classes (B, max_det).
Class names, input size, preprocessing and these choices go into the model's metadata.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from yft.io import write_atomic
from yft.project import UserError

PREPROCESSING = "BGR uint8 image letterboxed to input_size (top-left, pad 114), CHW float32, no normalisation"
NMS_KINDS = ("onnx", "trt")


class ExportModule(torch.nn.Module):
    """The model as exported: decoded outputs, or the raw head outputs with decode=False."""

    def __init__(self, model, decode=True):
        super().__init__()
        self.model = model.cpu().eval()
        self.model.head.decode_in_inference = decode

    def forward(self, images):
        return self.model(images)


def sample_inputs(exp, count=4):
    """Up to `count` letterboxed validation images (random noise if the split is empty)."""
    import cv2

    from yft.data.coco_io import image_dir
    from yft.inference import letterbox
    from yft.io import list_images

    folder = image_dir(exp, "val")
    files = list_images(folder, recursive=False)
    images = [
        letterbox(img, exp.test_size)[0]
        for img in (cv2.imread(str(p)) for p in files[:count])
        if img is not None
    ]
    if not images:
        rng = np.random.default_rng(0)
        images = [rng.uniform(0, 255, (3, *exp.test_size)).astype(np.float32)]
    return np.stack(images)


def trace_onnx(module, exp, opset, dynamic_batch):
    """torch.onnx.export of `module` -> a checked ModelProto (input "images", output "output")."""
    import io

    import onnx

    dummy = torch.zeros(1, 3, *exp.test_size)
    buffer = io.BytesIO()
    dynamic = {"images": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is deliberate: it needs no onnxscript and
        # handles YOLOX's decode; torch warns that it is the legacy path.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            dummy,
            buffer,
            input_names=["images"],
            output_names=["output"],
            opset_version=opset,
            dynamic_axes=dynamic,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    return proto


def add_nms(proto, kind, conf, iou, max_det):
    """Append NMS (kind "onnx" or "trt", see the module docstring) after the decoded "output"."""
    import onnx
    from onnx import TensorProto, helper

    if kind not in NMS_KINDS:
        raise UserError(f"--nms {kind}: use onnx (NonMaxSuppression, any runtime) or trt (EfficientNMS_TRT)")
    graph = proto.graph
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    out = next(o for o in graph.output if o.name == "output")
    batch = out.type.tensor_type.shape.dim[0]
    batch = batch.dim_param or batch.dim_value or "batch"
    nodes, inits = [], []

    def const(name, values, dtype=np.int64):
        inits.append(onnx.numpy_helper.from_array(np.asarray(values, dtype), f"nms/{name}"))
        return f"nms/{name}"

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [f"nms/{name}"], name=f"nms/{name}", **attrs))
        return f"nms/{name}"

    def channels(start, end, name):
        return node(
            "Slice",
            ["output", const(f"{name}_s", [start]), const(f"{name}_e", [end]), const(f"{name}_a", [2])],
            name,
        )

    def reduce_max(x, name):
        if opset >= 18:
            return node("ReduceMax", [x, const("axis_last", [-1])], name, keepdims=1)
        return node("ReduceMax", [x], name, axes=[-1], keepdims=1)

    center, size = channels(0, 2, "center"), channels(2, 4, "size")
    obj, cls = channels(4, 5, "obj"), channels(5, 2**62, "cls")
    half = node("Mul", [size, const("half", [0.5], np.float32)], "half_size")
    boxes = node(
        "Concat", [node("Sub", [center, half], "p1"), node("Add", [center, half], "p2")], "boxes", axis=-1
    )  # (B, N, 4) x1, y1, x2, y2
    scores = node("Mul", [cls, obj], "scores")  # (B, N, C)
    # YOLOX keeps only each anchor's best class: zero the other classes' scores.
    best = node(
        "Cast",
        [node("Equal", [scores, reduce_max(scores, "best")], "is_best")],
        "best_mask",
        to=TensorProto.FLOAT,
    )
    scores = node("Mul", [scores, best], "class_scores")
    conf = max(float(conf), 1e-6)  # a zero score must never survive
    if kind == "trt":
        outputs = ["num_dets", "det_boxes", "det_scores", "det_classes"]
        nodes.append(
            helper.make_node(
                "EfficientNMS_TRT",
                [boxes, scores],
                outputs,
                name="nms/EfficientNMS_TRT",
                domain="TRT",
                plugin_version="1",
                background_class=-1,
                box_coding=0,
                score_activation=0,
                iou_threshold=float(iou),
                score_threshold=conf,
                max_output_boxes=int(max_det),
            )
        )
        new_outputs = [
            helper.make_tensor_value_info("num_dets", TensorProto.INT32, [batch, 1]),
            helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [batch, max_det, 4]),
            helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [batch, max_det]),
            helper.make_tensor_value_info("det_classes", TensorProto.INT32, [batch, max_det]),
        ]
        proto.opset_import.append(helper.make_opsetid("TRT", 1))
    else:
        by_class = node("Transpose", [scores], "scores_bcn", perm=[0, 2, 1])  # (B, C, N)
        selected = node(
            "NonMaxSuppression",
            [
                boxes,
                by_class,
                const("max_per_class", [max_det]),
                const("iou", [iou], np.float32),
                const("conf", [conf], np.float32),
            ],
            "selected",
            center_point_box=0,
        )  # (K, 3): image, class, anchor
        image = node("Slice", [selected, const("c0", [0]), const("c1", [1]), const("ax1", [1])], "image")
        klass = node("Slice", [selected, const("c1b", [1]), const("c2", [2]), const("ax1b", [1])], "klass")
        anchor = node("Slice", [selected, const("c2b", [2]), const("c3", [3]), const("ax1c", [1])], "anchor")
        box = node("GatherND", [boxes, node("Concat", [image, anchor], "image_anchor", axis=1)], "box")
        score = node("GatherND", [by_class, selected], "score")
        score = (
            node("Unsqueeze", [score, const("ax_last", [1])], "score_col")
            if opset >= 13
            else node("Unsqueeze", [score], "score_col", axes=[1])
        )

        def as_float(x, n):
            return node("Cast", [x], n, to=TensorProto.FLOAT)

        nodes.append(
            helper.make_node(
                "Concat",
                [as_float(image, "image_f"), box, score, as_float(klass, "klass_f")],
                ["detections"],
                name="nms/detections",
                axis=1,
            )
        )
        new_outputs = [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["detections", 7])]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(new_outputs)
    onnx.checker.check_model(proto)  # a node in the custom "TRT" domain is allowed, not run
    return proto


def export_onnx(model, exp, path, opset=None, dynamic_batch=True, decode=True, nms=None):
    """Write `path` (atomically; nothing is written if any step fails).

    Returns the checked graph before NMS (a ModelProto), which `check_parity` compares with torch.
    """
    opset = opset or exp.onnx_opset
    if not 11 <= opset <= 23:
        raise UserError(f"--opset {opset}: use 11 to 23 (torch.onnx's TorchScript exporter)")
    if nms and not decode:
        raise UserError("--nms needs the boxes decoded in the graph: drop --no-decode")
    base = trace_onnx(ExportModule(model, decode), exp, opset, dynamic_batch)
    proto = type(base)()
    proto.CopyFrom(base)
    if nms:
        add_nms(proto, nms, exp.test_conf, exp.nmsthre, exp.deploy_max_det)
    metadata = {
        "class_names": json.dumps(list(exp.class_names), ensure_ascii=False),
        "input_size": json.dumps(list(exp.test_size)),
        "preprocessing": PREPROCESSING,
        "exp_name": exp.exp_name,
        "decode": json.dumps(bool(decode)),
        "strides": json.dumps([8, 16, 32]),
        "nms": nms or "",
        "output": (
            "cx, cy, w, h, objectness, class scores"
            if decode
            else "raw head: x, y grid offsets, log w, log h, objectness, class scores"
        ),
    }
    if nms:
        metadata.update(
            nms_conf=str(max(exp.test_conf, 1e-6)),
            nms_iou=str(exp.nmsthre),
            max_det=str(exp.deploy_max_det),
            output="detections (K, 7): image, x1, y1, x2, y2, score, class"
            if nms == "onnx"
            else "num_dets, det_boxes (x1, y1, x2, y2), det_scores, det_classes",
        )
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    write_atomic(path, proto.SerializeToString())
    return base


def check_parity(model, exp, onnx_path, base=None, decode=True, box_px=1e-2, box_rel=1e-4, score_abs=1e-4):
    """Prove the ONNX model matches torch on real validation images; raise UserError if not.

    1. Outputs: torch and onnxruntime on the same letterboxed images. Box channels (pixels, or
       raw offsets with decode=False) must agree within box_px + box_rel * |value|, score channels
       within score_abs. With NMS in the graph this compares the graph before NMS (`base`).
    2. mAP50:95 on up to exp.parity_images validation images, with torch and with the ONNX model
       (its own NMS when it has one; EfficientNMS only runs in TensorRT, so there the graph before
       NMS), must agree within exp.parity_map_tol.
    Returns a dict: box_diff, score_diff, images, map_torch, map_onnx, map_images, notes.
    """
    import tempfile

    import onnx

    from yft.deploy.accuracy import split_map
    from yft.inference import OnnxBackend, TorchBackend

    module = ExportModule(model, decode)
    images = sample_inputs(exp)
    with torch.no_grad():
        expected = module(torch.from_numpy(images)).numpy()
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = onnx_path
        if meta.get("nms"):
            raw_path = Path(tmp) / "before_nms.onnx"
            onnx.save(base, str(raw_path))
        got = OnnxBackend(raw_path).run(images)[0]
        diff = np.abs(expected - got)
        box_diff, score_diff = float(diff[..., :4].max()), float(diff[..., 4:].max())
        box_ok = (diff[..., :4] <= box_px + box_rel * np.abs(expected[..., :4])).all()
        if not (box_ok and score_diff <= score_abs):
            raise UserError(
                f"{onnx_path}: onnxruntime output differs from torch (boxes up to "
                f"{box_diff:.2e}, scores up to {score_diff:.2e})"
            )
        box_rel = float((diff[..., :4] / np.maximum(np.abs(expected[..., :4]), 1.0)).max())
        report = {
            "box_diff": box_diff,
            "box_rel_diff": box_rel,
            "score_diff": score_diff,
            "images": len(images),
            "map_torch": None,
            "map_onnx": None,
            "map_images": 0,
            "notes": [],
        }
        try:
            torch_map = split_map(TorchBackend(model, torch.device("cpu")), exp, "val", exp.parity_images)
        except UserError as err:  # no validation split yet: the output check above still holds
            report["notes"].append(f"mAP not compared: {err}")
            return report
        onnx_backend = OnnxBackend(raw_path if meta.get("nms") == "trt" else onnx_path)
        onnx_map = split_map(onnx_backend, exp, "val", exp.parity_images)
    if meta.get("nms") == "trt":
        report["notes"].append("EfficientNMS runs only in TensorRT: mAP compared on the graph before NMS")
    report.update(
        map_torch=torch_map["mAP50_95"], map_onnx=onnx_map["mAP50_95"], map_images=torch_map["num_images"]
    )
    if abs(report["map_torch"] - report["map_onnx"]) > exp.parity_map_tol:
        raise UserError(
            f"{onnx_path}: mAP50:95 {report['map_onnx']:.4f} with onnxruntime vs "
            f"{report['map_torch']:.4f} with torch on {report['map_images']} validation images "
            f"(allowed difference {exp.parity_map_tol})"
        )
    return report
