"""Bad input: every case gives one line naming the file (and line), a non-zero exit through the
task, no output file, and sources unchanged (hashed before and after)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yft.data.convert import convert
from yft.project import ROOT, UserError

NAMES, IDS = ["cat", "dog", "bird"], [1, 2, 3]
BOMB = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">
]><annotation><filename>a.jpg</filename><object><name>&lol2;</name></object></annotation>"""
XXE = """<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>"""


def tree_digest(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def make(tmp_path, fmt):
    src = tmp_path / "src"
    images = src / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.jpg")
    labels = src / "labels"
    labels.mkdir()
    if fmt == "yolo":
        (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return src, images, labels


CASES = {
    # name: (format, setup(images, labels) -> label source, expected message regex)
    "voc malformed": ("voc", lambda i, l: l / "a.xml", r"a\.xml:3:\d+: malformed XML \(mismatched tag\)"),
    "voc entity bomb": ("voc", lambda i, l: l / "a.xml", r"a\.xml: refused XML with entity"),
    "voc external entity": ("voc", lambda i, l: l / "a.xml", r"a\.xml: refused XML with entity"),
    "labelme malformed json": ("labelme", lambda i, l: l / "a.json", r"a\.json:1:\d+: invalid JSON"),
    "yolo field count": ("yolo", lambda i, l: l / "a.txt", r"a\.txt:2: expected 5 fields"),
    "yolo not a number": ("yolo", lambda i, l: l / "a.txt", r"a\.txt:1: not a number"),
    "yolo out of range": ("yolo", lambda i, l: l / "a.txt", r"a\.txt:1: coordinates must be normalised"),
    "yolo nan": ("yolo", lambda i, l: l / "a.txt", r"a\.txt:1: coordinates must be normalised"),
    "yolo unknown index": ("yolo", lambda i, l: l / "a.txt", r"a\.txt:1: unknown class index 7"),
    "label without image": ("yolo", lambda i, l: l / "zzz.txt", r"zzz\.txt: label without an image"),
    "image without label": ("yolo", lambda i, l: i / "b.jpg", r"b\.jpg: image without a label file"),
    "zero-byte image": ("yolo", lambda i, l: i / "a.jpg", r"a\.jpg: empty file"),
    "truncated image": ("yolo", lambda i, l: i / "a.jpg", r"a\.jpg: truncated JPEG header"),
    "non-image file": ("yolo", lambda i, l: i / "a.jpg", r"a\.jpg: not an image file"),
    "non-utf8 file name": ("yolo", None, r"caf\\xe9\.jpg': file name is not valid UTF-8"),
}


def corrupt(case, images, labels):
    if case == "voc malformed":
        (labels / "a.xml").write_text("<annotation>\n<filename>a.jpg</filename><object>\n</annotation>")
    elif case == "voc entity bomb":
        (labels / "a.xml").write_text(BOMB)
    elif case == "voc external entity":
        (labels / "a.xml").write_text(XXE)
    elif case == "labelme malformed json":
        (labels / "a.json").write_text('{"imagePath": "a.jpg", "shapes": [}')
    elif case == "yolo field count":
        (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    elif case == "yolo not a number":
        (labels / "a.txt").write_text("0 0.5 abc 0.2 0.2\n")
    elif case == "yolo out of range":
        (labels / "a.txt").write_text("0 1.5 0.5 0.2 0.2\n")
    elif case == "yolo nan":
        (labels / "a.txt").write_text("0 nan 0.5 0.2 0.2\n")
    elif case == "yolo unknown index":
        (labels / "a.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    elif case == "label without image":
        (labels / "zzz.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    elif case == "image without label":
        (images / "a.jpg").rename(images / "b.jpg")
        (labels / "b.txt").touch()
        (images / "b.jpg").rename(images / "a.jpg")
        Image.new("RGB", (5, 5)).save(images / "b.jpg")
        (labels / "b.txt").unlink()
    elif case == "zero-byte image":
        (images / "a.jpg").write_bytes(b"")
    elif case == "truncated image":
        (images / "a.jpg").write_bytes((images / "a.jpg").read_bytes()[:12])
    elif case == "non-image file":
        (images / "a.jpg").write_text("this is not a picture")
    elif case == "non-utf8 file name":
        Image.new("RGB", (5, 5)).save(os.fsdecode(bytes(images) + b"/caf\xe9.jpg"))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path):
    fmt, _, message = CASES[case]
    src, images, labels = make(tmp_path, fmt)
    corrupt(case, images, labels)
    before = tree_digest(src)
    out = tmp_path / "out.json"
    with pytest.raises(UserError, match=message) as err:
        convert(fmt, [labels], images, out, NAMES, IDS, require_labels=case == "image without label")
    assert "\n" not in str(err.value)
    assert not out.exists() and os.listdir(tmp_path) == ["src"]  # no partial or temporary file
    assert tree_digest(src) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_label(tmp_path):
    src, images, labels = make(tmp_path, "yolo")
    (labels / "a.txt").chmod(0)
    with pytest.raises(UserError, match=r"a\.txt: cannot read"):
        convert("yolo", [labels], images, tmp_path / "out.json", NAMES, IDS)
    assert not (tmp_path / "out.json").exists()


def test_task_gives_one_line_and_exit_1(tmp_path):
    src, images, labels = make(tmp_path, "yolo")
    (labels / "a.txt").write_text("0 0.5 0.5 0.2\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "convert",
            "--from",
            "yolo",
            "--src",
            str(labels),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "out.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "a.txt:1: expected 5 fields" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_validate_finds_truncated_and_non_images(tmp_path):
    from yft.data.validate import validate

    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(folder / "t.jpg")
    (folder / "t.jpg").write_bytes((folder / "t.jpg").read_bytes()[:600])  # header intact, data cut
    (folder / "z.jpg").write_bytes(b"")
    (folder / "n.jpg").write_text("text")
    ann = tmp_path / "a.json"
    ann.write_text(
        json.dumps(
            {
                "images": [
                    {"id": i, "file_name": n, "width": 64, "height": 64}
                    for i, n in enumerate(["t.jpg", "z.jpg", "n.jpg"], 1)
                ],
                "annotations": [],
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    before = tree_digest(tmp_path)
    report, _, _ = validate(None, ann, folder, report_path=tmp_path / "report.json")
    by_file = {Path(i["file"]).name: i["message"] for i in report.errors}
    assert "does not decode" in by_file["t.jpg"] and "truncated" in by_file["t.jpg"].lower()
    assert by_file["z.jpg"] == "empty file (0 bytes)" and by_file["n.jpg"] == "not an image file"
    after = tree_digest(tmp_path)
    assert {k: v for k, v in after.items() if k != "report.json"} == before
