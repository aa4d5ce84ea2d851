"""`invoke predict`: images, folders, globs and videos, every backend's detections the same,
COCO-results JSON, and the edge cases (empty, 1x1, very large, grayscale, 16-bit, RGBA and
corrupted files): bad files are reported and skipped, the rest go on."""

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yft.deploy.cli import run_predict
from yft.deploy.predict import list_sources, read_image
from yft.project import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def edge_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "normal.jpg"), rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "tiny.png"), np.full((1, 1, 3), 200, np.uint8))
    ramp = np.linspace(0, 255, 3200, dtype=np.uint8)
    cv2.imwrite(str(folder / "large.jpg"), np.broadcast_to(ramp[None, :, None], (2400, 3200, 3)).copy())
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 255, (64, 80), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65535, (64, 80, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "alpha.png"), rng.integers(0, 255, (50, 40, 4), dtype=np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "garbage.png").write_bytes(b"\x89PNG not really" * 10)
    good = (folder / "normal.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[:60])
    (folder / "notes.txt").write_text("not an image, not listed")
    # A PNG whose header claims 60000x60000: OpenCV raised on it and the whole run aborted.
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    (folder / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + bytes(64)
    )
    return folder


def test_reading_converts_every_kind_to_8bit_bgr(edge_folder):
    for name in ("normal.jpg", "tiny.png", "gray.png", "deep.png", "alpha.png"):
        img = read_image(edge_folder / name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
    deep = cv2.imread(str(edge_folder / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(
        read_image(edge_folder / "deep.png"), (deep >> 8).astype(np.uint8)
    )  # scaled, not clipped
    for name in ("empty.jpg", "garbage.png", "truncated.jpg", "huge.png"):
        assert read_image(edge_folder / name) is None, name


def test_folder_with_bad_files_reports_and_continues(deploy_setup, edge_folder, tmp_path, capsys):
    exp, ckpt = deploy_setup
    written, skipped = run_predict(
        exp, CPU, edge_folder, ckpt, "torch", 0.3, tmp_path / "out", save_json=True
    )
    assert sorted(p.name for p in skipped) == ["empty.jpg", "garbage.png", "huge.png", "truncated.jpg"]
    assert sorted(t.name for t, _ in written) == [
        "alpha.png",
        "deep.png",
        "gray.png",
        "large.png",
        "normal.png",
        "tiny.png",
    ]
    out = capsys.readouterr().out
    assert "skipped" in out and "empty file" in out and "6 files written" in out and "4 skipped" in out
    assert "huge.png: 60000x60000 pixels, above the decoders' limit" in out
    large = cv2.imread(str(tmp_path / "out" / "large.png"))
    assert large.shape == (2400, 3200, 3)  # drawn on the original image, not the letterboxed one
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(rows) == sum(len(d) for _, d in written) > 0
    sizes = {"tiny.png": (1, 1), "large.jpg": (3200, 2400), "normal.jpg": (120, 90)}
    for row in rows:
        assert set(row) == {"image_id", "file_name", "category_id", "bbox", "score"}
        assert row["category_id"] in exp.category_ids() and row["score"] >= 0.3
        x, y, w, h = row["bbox"]
        if row["file_name"] in sizes:  # boxes are clipped to the image
            W, H = sizes[row["file_name"]]
            assert -0.01 <= x and -0.01 <= y and x + w <= W + 0.01 and y + h <= H + 0.01


def test_annotations_use_the_project_class_names(deploy_setup, tmp_path, capsys):
    exp, ckpt = deploy_setup
    image = sorted((Path(exp.data_dir) / "val2017").glob("*.jpg"))[0]
    written, _ = run_predict(exp, CPU, image, ckpt, "torch", 0.3, tmp_path)
    dets = written[0][1]
    assert len(dets)
    out = capsys.readouterr().out
    assert any(name in out for name in exp.class_names)


def test_torch_and_onnx_predict_the_same_and_globs_work(deploy_setup, deploy_onnx, tmp_path, same_detections):
    exp, ckpt = deploy_setup
    onnx_path = deploy_onnx
    pattern = f"{exp.data_dir}/val2017/*.jpg"
    a, _ = run_predict(exp, CPU, pattern, ckpt, "torch", 0.3, tmp_path / "t")
    b, _ = run_predict(exp, CPU, pattern, onnx_path, "onnx", 0.3, tmp_path / "o")
    assert len(a) == len(b) == 4
    for (_, da), (_, db) in zip(a, b):
        same_detections(da, db)


def test_video_in_annotated_video_out(deploy_setup, tmp_path):
    exp, ckpt = deploy_setup
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    rng = np.random.default_rng(1)
    for _ in range(4):
        writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    written, skipped = run_predict(exp, CPU, tmp_path, ckpt, "torch", 0.3, tmp_path / "out", save_json=True)
    assert [p.name for p in skipped] == ["broken.mp4"]
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 4
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {r["file_name"] for r in rows} <= {f"clip.avi#{k}" for k in range(4)}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_nothing_readable_or_nothing_there_is_an_error(deploy_setup, edge_folder, tmp_path):
    exp, ckpt = deploy_setup
    with pytest.raises(UserError, match="no readable image"):
        run_predict(exp, CPU, edge_folder / "empty.jpg", ckpt, "torch", 0.3, tmp_path)
    with pytest.raises(UserError, match="no such image"):
        list_sources(tmp_path / "missing" / "*.jpg")
    with pytest.raises(UserError, match="--backend tflite"):
        run_predict(exp, CPU, edge_folder, ckpt, "tflite", 0.3, tmp_path)
    with pytest.raises(UserError, match="no TensorRT engine"):
        run_predict(exp, CPU, edge_folder, ckpt.with_suffix(".engine"), "trt", 0.3, tmp_path)


def test_an_unwritable_output_folder_is_one_line(deploy_setup, edge_folder, tmp_path):
    exp, ckpt = deploy_setup
    (tmp_path / "file").write_text("x")
    for output in ("/dev/null", tmp_path / "file" / "out"):
        with pytest.raises(UserError, match="cannot write here"):
            run_predict(exp, CPU, edge_folder / "normal.jpg", ckpt, "torch", 0.3, output)
