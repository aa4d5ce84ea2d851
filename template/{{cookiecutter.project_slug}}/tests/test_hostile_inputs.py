"""Regressions found by walking the main path as a clumsy user would (Windows-edited files,
re-runs, interrupted writes). Each test failed before its fix."""

import numpy as np
import pytest
from PIL import Image

from yft.data.convert import convert
from yft.project import UserError

NAMES = ["cat", "dog"]
IDS = [1, 2]
BOM = b"\xef\xbb\xbf"


def jpg(path, width=100, height=50):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 80, np.uint8)).save(path)
    return path


def test_yolo_names_and_labels_saved_with_a_bom_and_crlf(tmp_path):
    # Notepad saves UTF-8 with a byte-order mark and CRLF line ends: the mark must not glue onto
    # the first class name ('\ufeffdog', unknown) nor the first label's class index.
    src = tmp_path / "yolo export"
    jpg(src / "é 1.jpg")
    (src / "obj.names").write_bytes(BOM + b"dog\r\ncat\r\n")
    (src / "é 1.txt").write_bytes(BOM + b"1 0.5 0.5 0.2 0.4\r\n0 0.05 0.5 0.1 0.2\r\n")
    out = tmp_path / "out.json"
    summary = convert("yolo", [src], None, out, NAMES, IDS)
    import json

    coco = json.loads(out.read_text())
    got = sorted((a["category_id"], a["bbox"]) for a in coco["annotations"])
    assert got == [(1, [40.0, 15.0, 20.0, 20.0]), (2, [0.0, 20.0, 10.0, 10.0])]
    assert summary["class_table"]["names"] == ["dog", "cat"]


@pytest.mark.parametrize("fmt", ["yolo", "voc", "labelme"])
def test_a_folder_without_labels_of_the_format_is_refused_not_all_negatives(tmp_path, fmt):
    # pointing --src at the image folder (or choosing the wrong --from) used to write every image
    # as a negative and exit 0
    images = tmp_path / "my images"
    jpg(images / "a.jpg")
    jpg(images / "sub" / "b.jpg")
    out = tmp_path / "out.json"
    with pytest.raises(UserError, match="no .*files? (found|pairs)"):
        convert(fmt, [images], images, out, NAMES, IDS)
    assert not out.exists()


@pytest.mark.parametrize(
    "fmt,text", [("coco", '{"images": [], "annotations": [], "categories": []}'), ("labelstudio", "[]")]
)
def test_an_export_with_no_images_is_refused(tmp_path, fmt, text):
    src = tmp_path / "export.json"
    src.write_text(text)
    images = tmp_path / "images"
    jpg(images / "a.jpg")  # used to become a negative: an all-negative dataset, exit 0
    out = tmp_path / "out.json"
    with pytest.raises(UserError, match="nothing to convert"):
        convert(fmt, [src], images if fmt != "coco" else None, out, NAMES, IDS)
    assert not out.exists()


def test_predict_reads_subfolders_and_same_names_never_overwrite(deploy_setup, tmp_path):
    # a split keeps subfolders ("sub a/dup.jpg", "sub b/dup.jpg"): predict on the split folder
    # used to skip them silently (exit 0), and a.jpg beside a.png both became out/a.png
    import torch

    from yft.deploy.cli import run_predict
    from yft.deploy.predict import list_sources, output_names

    src = tmp_path / "val images"
    for rel in ("sub a/dup.jpg", "sub b/dup.jpg", "a.jpg", "a.png", "é 1.jpg", ".cache/hidden.jpg"):
        jpg(src / rel, 64, 48)
    found = list_sources(src)
    names = output_names(found, src)
    assert sorted(n for n, _ in names.values()) == [
        "a.jpg.png",
        "a.png.png",
        "sub a/dup.png",
        "sub b/dup.png",
        "é 1.png",
    ]
    exp, ckpt = deploy_setup
    out = src / "predictions"  # inside the source: a second run must not read its own drawings
    for force in (False, True):  # the rerun into the same --output needs --force
        written, skipped = run_predict(
            exp, torch.device("cpu"), src, ckpt, "torch", 0.3, out, save_json=True, force=force
        )
        assert len(written) == 5 and not skipped
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        n for n, _ in names.values()
    )


def test_every_task_accepts_its_own_defaults():
    # `invoke tune` without --seed failed with "--seed -1: must be at least 0": its default
    # (-1, "not given") broke the rule the option checker applies by name
    import importlib.util
    import inspect

    from invoke import Task

    from yft.cli import check_options
    from yft.project import ROOT

    spec = importlib.util.spec_from_file_location("project_tasks", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    found = [t for t in vars(tasks).values() if isinstance(t, Task)]
    assert len(found) > 20
    for task in found:
        body = inspect.unwrap(task.body)
        defaults = {
            n: p.default
            for n, p in inspect.signature(body).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        check_options(body, defaults)


def test_tune_without_weights_is_one_line_and_from_scratch_searches_the_lr_in_use(exp, tmp_path, monkeypatch):
    # tune without cached pretrained weights (offline) failed inside Optuna's first trial: a
    # traceback and a failed trial in the study; its advice (--from-scratch) was no tune option;
    # and from-scratch trials searched basic_lr_per_img, which the scratch profile replaces
    import torch

    from yft.data.sample import make_sample_dataset
    from yft.train import tune as tune_module

    make_sample_dataset(exp, counts=(2, 2, 0), seed=0)
    sets = [f"data_dir={exp.data_dir}", f"output_dir={exp.output_dir}"]
    monkeypatch.setenv("YFT_WEIGHTS", str(tmp_path / "empty cache"))

    def offline(*args, **kwargs):
        from yft.train.weights import DownloadError

        raise DownloadError("offline", "no network")

    monkeypatch.setattr("yft.train.weights.download_weights", offline)
    with pytest.raises(UserError, match="no pretrained weights .* --from-scratch"):
        tune_module.tune(exp.exp_file, torch.device("cpu"), 1, 1, 1, overrides=[*sets, "pretrained=auto"])
    assert not (tmp_path / "runs").exists()  # no study database, no trial folder

    seen = {}

    def record(study_space, *args, **kwargs):
        seen.update(study_space)
        raise UserError("stop here")

    monkeypatch.setattr(tune_module.tune_space, "validate_space", lambda exp, space, where: record(space))
    with pytest.raises(UserError, match="stop here"):
        tune_module.tune(exp.exp_file, torch.device("cpu"), 1, 1, 1, overrides=sets, from_scratch=True)
    assert "scratch_basic_lr_per_img" in seen and "basic_lr_per_img" not in seen
    assert seen["scratch_basic_lr_per_img"]["high"] == pytest.approx(exp.scratch_basic_lr_per_img * 10)


def test_a_json_file_given_as_checkpoint_is_one_line_naming_it(tmp_path):
    # torch's load error spans lines; the task printed only its last ("Check the documentation
    # of torch.load ..."), without the file or the cause
    from yft.train.checkpoint import load_checkpoint

    bad = tmp_path / "labels.json"
    bad.write_text('{"images": []}')
    with pytest.raises(UserError) as caught:
        load_checkpoint(bad)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{bad}: not a loadable checkpoint")
    assert "weights_only" not in message


def test_a_run_stopped_before_its_first_checkpoint_names_the_earlier_one(exp):
    # Ctrl-C in the first epoch leaves `latest` on a run without a checkpoint: eval, predict and
    # export said only "is it still training? wait", not where the last good weights are
    from pathlib import Path

    from yft.inference import default_checkpoint
    from yft.runs import new_run

    first = new_run(exp)
    (first / "best.pth").write_bytes(b"weights")
    second = new_run(exp)
    assert second != first
    with pytest.raises(
        UserError,
        match=r"no checkpoint in .*train2 \(still training, or stopped .* "
        r"--ckpt .*train/best\.pth",
    ):
        default_checkpoint(exp)
    (Path(second) / "last.pth").write_bytes(b"weights")  # its first epoch ended
    assert default_checkpoint(exp) == Path(second) / "last.pth"


def test_labelstudio_storage_path_picks_the_subfolder_it_names(tmp_path):
    # s3://bucket/x/sub b/dup.jpg with --images holding sub a/dup.jpg and sub b/dup.jpg was
    # refused as ambiguous: the file-name fallback ran before the longer path 'sub b/dup.jpg'
    import json

    images = tmp_path / "my images"
    jpg(images / "sub a" / "dup.jpg")
    jpg(images / "sub b" / "dup.jpg")

    def task(tid, ref, label):
        value = {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": [label]}
        result = {
            "id": f"r{tid}",
            "type": "rectanglelabels",
            "original_width": 100,
            "original_height": 50,
            "value": value,
        }
        return {"id": tid, "data": {"image": ref}, "annotations": [{"id": tid, "result": [result]}]}

    src = tmp_path / "export.json"
    src.write_text(
        json.dumps(
            [
                task(1, "s3://bucket/x/sub a/dup.jpg", "cat"),
                task(2, "/data/local-files/?d=other/sub%20b/dup.jpg", "dog"),
            ]
        )
    )
    out = tmp_path / "out.json"
    convert("labelstudio", [src], images, out, NAMES, IDS)
    coco = json.loads(out.read_text())
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    assert sorted((names[a["image_id"]], a["category_id"]) for a in coco["annotations"]) == [
        ("sub a/dup.jpg", 1),
        ("sub b/dup.jpg", 2),
    ]
    with pytest.raises(UserError, match="ambiguous"):  # a bare name still cannot choose
        src.write_text(json.dumps([task(1, "http://host/img/dup.jpg", "cat")]))
        convert("labelstudio", [src], images, tmp_path / "amb.json", NAMES, IDS)


def test_force_never_replaces_a_file_the_conversion_reads(tmp_path):
    # `convert --out <src>/obj.names --force` wrote the COCO JSON over the export's names file
    import json

    src = tmp_path / "yolo"
    jpg(src / "a.jpg")
    (src / "obj.names").write_text("cat\ndog\n")
    (src / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for target in (src / "obj.names", src / "a.txt", src / "a.jpg"):
        before = target.read_bytes()
        with pytest.raises(UserError, match="would overwrite .* of the input"):
            convert("yolo", [src], None, target, NAMES, IDS, force=True)
        assert target.read_bytes() == before
    out = src / "labels.json"  # a new file beside the labels is fine, and so is replacing it
    convert("yolo", [src], None, out, NAMES, IDS)
    convert("yolo", [src], None, out, NAMES, IDS, force=True)
    assert len(json.loads(out.read_text())["annotations"]) == 1


def test_export_onnx_output_on_the_checkpoint_is_refused_even_with_force(exp, tmp_path):
    # `export-onnx --ckpt best.pth --output best.pth --force` replaced the weights with the ONNX model
    from yft.deploy.cli import run_export_onnx

    ckpt = tmp_path / "best.pth"
    ckpt.write_bytes(b"weights")
    with pytest.raises(UserError, match="is the checkpoint being exported"):
        run_export_onnx(exp, ckpt, ckpt, None, True, force=True)
    assert ckpt.read_bytes() == b"weights"
