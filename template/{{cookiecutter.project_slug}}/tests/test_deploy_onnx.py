"""ONNX export: metadata, checker, dynamic batch, decode / no-decode, NMS in the graph (ONNX and
TensorRT forms) with YOLOX's semantics, and the enforced parity check against torch."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from yft.deploy.cli import parity_path, run_export_onnx
from yft.deploy.onnx_export import add_nms, check_parity, export_onnx
from yft.inference import OnnxBackend, TorchBackend, decode, detections_from_nms, load_model
from yft.project import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(deploy_setup, deploy_onnx, tmp_path_factory):
    """The checkpoint exported twice: decoded (the shared export) and with ONNX NMS in the graph."""
    exp, ckpt = deploy_setup
    exp = copy.copy(exp)
    exp.deploy_max_det = 10_000  # more than the anchors: the graph may keep every box torch keeps
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the one_thread fixture
    try:
        nms, _ = run_export_onnx(
            exp, ckpt, tmp_path_factory.mktemp("onnx") / "nms.onnx", 13, True, True, "onnx"
        )
    finally:
        torch.set_num_threads(threads)
    return exp, ckpt, deploy_onnx, nms


def meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_decoded_export_carries_classes_and_preprocessing(exported):
    exp, ckpt, plain, _ = exported
    model = onnx.load(str(plain))
    onnx.checker.check_model(model)
    info = meta(plain)
    assert json.loads(info["class_names"]) == list(exp.class_names)
    assert json.loads(info["input_size"]) == list(exp.test_size)
    assert "letterboxed" in info["preprocessing"] and info["decode"] == "true" and info["nms"] == ""
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    report = json.loads(parity_path(plain).read_text())
    assert report["score_diff"] < 1e-4 and report["map_images"] == 4
    assert (
        report["map_torch"] is not None
        and abs(report["map_torch"] - report["map_onnx"]) <= exp.parity_map_tol
    )


def test_batch_of_three_matches_torch(exported):
    exp, ckpt, plain, _ = exported
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, *exp.test_size)).astype(np.float32)
    expected = TorchBackend(load_model(exp, ckpt), torch.device("cpu"))(images)
    got = OnnxBackend(plain)(images)
    assert got.shape == expected.shape == (3, expected.shape[1], 5 + exp.num_classes)
    assert torch.allclose(got[..., 4:], expected[..., 4:], atol=1e-4)


def test_nms_in_graph_gives_the_same_detections_as_torch(exported, same_detections):
    exp, ckpt, plain, nms = exported
    assert [o.name for o in onnx.load(str(nms)).graph.output] == ["detections"]
    images = np.stack(
        [np.random.default_rng(i).uniform(0, 255, (3, *exp.test_size)) for i in range(2)]
    ).astype(np.float32)
    torch_dets = TorchBackend(load_model(exp, ckpt), torch.device("cpu")).detect(
        images, [1.0, 0.5], 0.5, exp.nmsthre
    )
    graph_dets = OnnxBackend(nms).detect(images, [1.0, 0.5], 0.5, exp.nmsthre)
    assert sum(len(d) for d in torch_dets) > 0
    for want, got in zip(torch_dets, graph_dets):
        same_detections(got, want)
    with pytest.raises(UserError, match="NMS runs inside"):
        OnnxBackend(nms)(images)


def identity_graph(num_anchors, num_classes, opset):
    shape = ["batch", num_anchors, 5 + num_classes]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [11, 17, 18, 23])
def test_onnx_nms_is_yolox_postprocess(opset, same_detections):
    """Best class per anchor, score = objectness x class score, per-class NMS: exactly YOLOX's
    postprocess, on outputs with many overlapping boxes."""
    import onnxruntime as ort

    rng = np.random.default_rng(opset)
    raw = np.zeros((2, 300, 8), np.float32)
    raw[..., :2], raw[..., 2:4] = rng.uniform(0, 128, (2, 300, 2)), rng.uniform(4, 40, (2, 300, 2))
    raw[..., 4:] = rng.uniform(0, 1, (2, 300, 4))
    session = ort.InferenceSession(
        add_nms(identity_graph(300, 3, opset), "onnx", 0.3, 0.5, 100).SerializeToString()
    )
    det = session.run(None, {"images": raw})[0]
    got = detections_from_nms(det[:, 0].astype(int), det[:, 1:5], det[:, 5], det[:, 6], [1.0, 2.0], 0.3)
    want = decode(torch.from_numpy(raw.copy()), [1.0, 2.0], 3, 0.3, 0.5)
    assert len(want[0]) > 50
    for g, w in zip(got, want):
        same_detections(g, w, atol=1e-4)


def test_tensorrt_nms_graph_is_valid_onnx_with_efficient_nms(tmp_path):
    proto = add_nms(identity_graph(300, 3, 17), "trt", 0.01, 0.65, 50)
    onnx.checker.check_model(proto)
    node = proto.graph.node[-1]
    assert (node.op_type, node.domain) == ("EfficientNMS_TRT", "TRT")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["max_output_boxes"] == 50 and attrs["box_coding"] == 0 and attrs["background_class"] == -1
    assert abs(attrs["iou_threshold"] - 0.65) < 1e-6 and attrs["plugin_version"] == b"1"
    outputs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output
    }
    assert outputs == {
        "num_dets": ["batch", 1],
        "det_boxes": ["batch", 50, 4],
        "det_scores": ["batch", 50],
        "det_classes": ["batch", 50],
    }


def test_trt_nms_model_is_refused_by_onnxruntime_with_the_reason(deploy_onnx, tmp_path):
    proto = add_nms(onnx.load(str(deploy_onnx)), "trt", 0.01, 0.65, 100)
    for entry in proto.metadata_props:
        if entry.key == "nms":
            entry.value = "trt"
    onnx.save(proto, str(tmp_path / "t.onnx"))
    with pytest.raises(UserError, match="only TensorRT runs"):
        OnnxBackend(tmp_path / "t.onnx")


def test_no_decode_graph_is_decoded_by_the_backend(deploy_setup, tmp_path):
    exp, ckpt = deploy_setup
    model = load_model(exp, ckpt)
    base = export_onnx(model, exp, tmp_path / "raw.onnx", opset=11, decode=False)
    report = check_parity(model, exp, tmp_path / "raw.onnx", base, decode=False)
    assert report["box_diff"] < 1e-3 and meta(tmp_path / "raw.onnx")["decode"] == "false"
    images = np.random.default_rng(1).uniform(0, 255, (2, 3, *exp.test_size)).astype(np.float32)
    expected = TorchBackend(load_model(exp, ckpt), torch.device("cpu"))(images)
    got = OnnxBackend(tmp_path / "raw.onnx")(images)
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-4)


def test_bad_options_are_one_line_errors(deploy_setup, tmp_path):
    exp, ckpt = deploy_setup
    model = load_model(exp, ckpt)
    with pytest.raises(UserError, match="--opset 9"):
        export_onnx(model, exp, tmp_path / "a.onnx", opset=9)
    with pytest.raises(UserError, match="--nms needs"):
        export_onnx(model, exp, tmp_path / "a.onnx", decode=False, nms="onnx")
    with pytest.raises(UserError, match="--nms tensorrt"):
        export_onnx(model, exp, tmp_path / "a.onnx", nms="tensorrt")
    assert list(tmp_path.iterdir()) == []


def test_failed_parity_leaves_no_onnx_file(deploy_setup, deploy_onnx, tmp_path, monkeypatch):
    """The export itself is replayed from the shared one (tracing is slow); the parity check is real."""
    import shutil

    from yft.deploy import cli

    exp, ckpt = deploy_setup

    def replay(model, exp, path, *args):
        shutil.copy(deploy_onnx, path)
        return onnx.load(str(deploy_onnx))

    monkeypatch.setattr(cli, "export_onnx", replay)
    real_run = OnnxBackend.run
    monkeypatch.setattr(OnnxBackend, "run", lambda self, images: [real_run(self, images)[0] + 0.5])
    with pytest.raises(UserError, match="differs from torch"):
        run_export_onnx(exp, ckpt, tmp_path / "bad.onnx", None, True)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_export_is_kept_unless_force_and_a_good_export(
    deploy_setup, deploy_onnx, tmp_path, monkeypatch
):
    import os
    import shutil

    from yft.deploy import cli

    exp, ckpt = deploy_setup
    target = tmp_path / "best.onnx"
    target.write_bytes(b"the user's earlier export")
    with pytest.raises(UserError, match="best.onnx: exists .* --force"):
        run_export_onnx(exp, ckpt, target, None, True)

    def replay(model, exp, path, *args):
        shutil.copy(deploy_onnx, path)
        return onnx.load(str(deploy_onnx))

    monkeypatch.setattr(cli, "export_onnx", replay)
    real_run = OnnxBackend.run
    monkeypatch.setattr(OnnxBackend, "run", lambda self, images: [real_run(self, images)[0] + 0.5])
    with pytest.raises(UserError, match="differs from torch"):
        run_export_onnx(exp, ckpt, target, None, True, force=True)
    assert target.read_bytes() == b"the user's earlier export" and os.listdir(tmp_path) == ["best.onnx"]
