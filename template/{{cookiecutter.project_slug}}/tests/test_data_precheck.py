"""Bad data stops train and eval before they start: one line naming the problem, pointing to
`invoke validate --fix` (it used to be a 40-line traceback, or training on NaN boxes)."""

import json
import struct
import zlib

import pytest
import torch

from yft.data.coco_io import annotation_path, image_dir
from yft.data.precheck import check_split
from yft.project import UserError
from yft.runs import runs_root


def png_header(width, height):
    """The first bytes of a PNG claiming this size (enough for a header reader)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def edit(exp, change):
    path = annotation_path(exp, "train")
    coco = json.loads(path.read_text())
    change(coco, image_dir(exp, "train"))
    path.write_text(json.dumps(coco))  # json.dumps writes NaN as the bare token, like the broken tools


def first_box(coco):
    return coco["annotations"][0]


def huge(coco, folder):
    image = coco["images"][0]
    (folder / image["file_name"]).write_bytes(png_header(60000, 60000))
    image["width"] = image["height"] = 60000


def truncated(coco, folder):
    path = folder / coco["images"][0]["file_name"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES = {
    "unknown category": (lambda c, f: first_box(c).update(category_id=999), "unknown category"),
    "0-byte image": (lambda c, f: (f / c["images"][0]["file_name"]).write_bytes(b""), "empty file"),
    "60000x60000 header": (huge, "above the decoders' limit"),
    "images not a list": (lambda c, f: c.update(images={"a": 1}), "not a COCO detection file"),
    "bbox a string": (lambda c, f: first_box(c).update(bbox="1,2,3,4"), "box is not four finite numbers"),
    "NaN box": (lambda c, f: first_box(c).update(bbox=[1, 2, float("nan"), 4]), "box is not four finite"),
    "negative box": (lambda c, f: first_box(c).update(bbox=[5, 5, -3, 4]), "zero or negative box size"),
    "box outside": (lambda c, f: first_box(c).update(bbox=[5, 5, 5000, 4]), "box outside the image"),
    "duplicate image id": (lambda c, f: c["images"][1].update(id=c["images"][0]["id"]), "duplicate image id"),
    "unknown image": (lambda c, f: first_box(c).update(image_id=123456), "annotation of an unknown image"),
    "id a list": (lambda c, f: first_box(c).update(image_id=[1]), "annotation of an unknown image"),
    "truncated JPEG": (truncated, "truncated JPEG"),
    "empty split": (lambda c, f: c.update(images=[], annotations=[]), "holds no images"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_data_is_one_line_before_training(sample_exp, case):
    change, expected = CASES[case]
    edit(sample_exp, change)
    with pytest.raises(UserError) as err:
        check_split(sample_exp, "train")
    message = str(err.value)
    assert expected in message and "\n" not in message
    if case not in ("images not a list", "empty split"):
        assert "invoke validate --fix" in message


def test_train_refuses_before_its_first_step(sample_exp):
    from yft.train.run import train

    edit(sample_exp, lambda c, f: first_box(c).update(bbox=[1, 2, float("nan"), 4]))
    with pytest.raises(UserError, match="box is not four finite numbers"):
        train(sample_exp, torch.device("cpu"), batch_size=4, progress=False, max_iters_per_epoch=1)
    assert not runs_root(sample_exp).exists()  # no run folder for a run that could not start


def test_eval_refuses_a_nan_ground_truth_up_front(sample_exp, tmp_path):
    from yft.evaluate.cli import run_eval

    path = annotation_path(sample_exp, "val")
    coco = json.loads(path.read_text())
    coco["annotations"][0]["bbox"][3] = float("nan")
    path.write_text(json.dumps(coco))
    model = sample_exp.get_model()
    ckpt = tmp_path / "best.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    with pytest.raises(UserError, match="instances_val2017.json: 1 problem .*box is not four finite numbers"):
        run_eval(sample_exp, torch.device("cpu"), ckpt, "val", "torch", 4, out=tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_a_motion_photo_with_data_after_the_jpeg_passes(sample_exp):
    folder = image_dir(sample_exp, "train")
    first = sorted(folder.iterdir())[0]
    first.write_bytes(first.read_bytes() + b"ftypmp42" + bytes(1000))  # a video appended, as phones do
    check_split(sample_exp, "train")


def test_validate_fails_an_empty_split(sample_exp):
    from yft.data.validate import validate

    edit(sample_exp, lambda c, f: c.update(images=[], annotations=[]))
    report, _, _ = validate(sample_exp)
    assert any(i["check"] == "empty split" and i["split"] == "train" for i in report.errors)


def test_an_image_that_stops_decoding_during_training_is_named(sample_exp):
    from yft.data.loaders import build_train_dataset

    dataset = build_train_dataset(sample_exp)
    source = dataset._dataset
    name = source.annotations[0][3]
    (image_dir(sample_exp, "train") / name).write_bytes(b"")  # replaced after the check
    with pytest.raises(UserError, match=f"{name}: does not decode .* then `invoke train --resume`"):
        source.resized_image(0)


def test_a_decode_failure_in_a_loader_worker_stays_one_line(sample_exp):
    """Training loads images in worker processes; torch re-raises their errors with the worker's
    traceback in the message. The user still gets the one line naming the file."""
    import torch

    from yft.data.loaders import build_train_dataset

    source = build_train_dataset(sample_exp)._dataset
    path = image_dir(sample_exp, "train") / source.annotations[0][3]
    path.write_bytes(b"")

    class FirstImage(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return source.resized_image(0)

    with pytest.raises(UserError) as info:
        list(torch.utils.data.DataLoader(FirstImage(), num_workers=1, collate_fn=list))
    message = str(info.value)
    assert (
        message.startswith(f"{path}: does not decode") and "\n" not in message and "Traceback" not in message
    )
