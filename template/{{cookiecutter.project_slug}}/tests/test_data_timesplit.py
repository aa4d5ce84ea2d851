"""invoke split --by-time: EXIF DateTimeOriginal or file-name times, oldest to train, groups kept
whole, --gap, images without a time counted (or refused with --strict), time ranges in stats."""

import json
import random
from datetime import datetime, timedelta

import pytest
from PIL import Image

from yft.data.split import split_dataset
from yft.data.stats import format_stats, split_stats
from yft.data.timesplit import parse_gap, parse_time
from yft.project import UserError

START = datetime(2024, 3, 1, 8, 0, 0)


def write_dataset(tmp_path, names, exif_times):
    """Real JPEGs (EXIF DateTimeOriginal where a time is given) and a COCO file over them."""
    images = tmp_path / "all"
    images.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "c1"}, {"id": 2, "name": "c2"}]}
    for n, (name, when) in enumerate(zip(names, exif_times)):
        exif = Image.Exif()
        if when is not None:
            exif.get_ifd(0x8769)[0x9003] = (
                when if isinstance(when, str) else when.strftime("%Y:%m:%d %H:%M:%S")
            )
        Image.new("RGB", (16, 12), (n % 255, 0, 0)).save(images / name, exif=exif)
        coco["images"].append({"id": n + 1, "file_name": name, "width": 16, "height": 12})
        coco["annotations"].append(
            {
                "id": n + 1,
                "image_id": n + 1,
                "category_id": 1 + n % 2,
                "bbox": [1, 1, 4, 4],
                "area": 16,
                "iscrowd": 0,
            }
        )
    ann = tmp_path / "all.json"
    ann.write_text(json.dumps(coco))
    return ann, images


def load(out, split):
    return json.loads((out / "annotations" / f"instances_{split}2017.json").read_text())


def captured(coco):
    return [
        datetime.strptime(i["date_captured"], "%Y-%m-%d %H:%M:%S")
        for i in coco["images"]
        if "date_captured" in i
    ]


def test_exif_times_oldest_to_train(tmp_path):
    rng = random.Random(0)
    order = list(range(30))
    rng.shuffle(order)  # file names say nothing about time
    names = [f"img_{k:03d}.jpg" for k in order] + ["no_exif_a.jpg", "no_exif_b.jpg", "zero.jpg"]
    times = [START + timedelta(hours=7 * i) for i in range(30)] + [None, None, "0000:00:00 00:00:00"]
    ann, images = write_dataset(tmp_path, names, times)
    out = tmp_path / "data"

    with pytest.raises(
        UserError, match=r"no_exif_a.jpg: no EXIF DateTimeOriginal; 3 of 33 images .*--strict"
    ):
        split_dataset(ann, images, out, (0.6, 0.2, 0.2), by_time=True, strict=True)
    assert not out.exists()

    written, lines = split_dataset(ann, images, out, (0.6, 0.2, 0.2), by_time=True)
    parts = {s: load(out, s) for s in ("train", "val", "test")}
    assert sum(len(p["images"]) for p in parts.values()) == 33  # untimed ones placed, none lost
    train, val, test = (captured(parts[s]) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (18, 6, 6)
    assert max(train) < min(val) and max(val) < min(test)
    text = "\n".join(lines)
    assert "30 of 33 images timed" in text and "3 images without a capture time" in text
    assert "2 no EXIF DateTimeOriginal: no_exif_a.jpg, no_exif_b.jpg" in text
    assert "1 EXIF DateTimeOriginal not a date: zero.jpg" in text
    assert (
        f"train: {min(train):%Y-%m-%d %H:%M:%S} .. {max(train):%Y-%m-%d %H:%M:%S} (18 timed images)" in text
    )

    stats = split_stats(parts["val"])
    assert stats["time_range"] == {"first": str(min(val)), "last": str(max(val)), "timed_images": 6}
    assert f"captured {min(val)} .. {max(val)} (6 timed images)" in format_stats({"val": stats})


def test_names_groups_and_gap(tmp_path):
    """Sessions of 4 frames named s<k>_<YYYYmmdd_HHMMSS>.jpg, one session a day; sessions stay whole,
    and a 36 h gap leaves out the sessions too close to the next split."""
    names, when = [], []
    for k in range(10):
        for f in range(4):
            t = START + timedelta(days=k, minutes=10 * f)
            names.append(f"s{k}_{t:%Y%m%d_%H%M%S}.jpg")
            when.append(None)
    ann, images = write_dataset(tmp_path, names, when)
    out = tmp_path / "data"
    written, lines = split_dataset(
        ann,
        images,
        out,
        (0.6, 0.2, 0.2),
        group_by=r"^(s\d+)_",
        time_from=r"_(\d{8}_\d{6})\.jpg$",
        time_format="%Y%m%d_%H%M%S",
        gap="36h",
    )
    parts = {s: load(out, s) for s in ("train", "val", "test")}
    sessions = {s: {i["file_name"].split("_")[0] for i in p["images"]} for s, p in parts.items()}
    assert sessions == {"train": {"s0", "s1", "s2", "s3", "s4"}, "val": {"s6"}, "test": {"s8", "s9"}}
    for s, p in parts.items():  # every session whole
        assert all(sum(i["file_name"].startswith(k + "_") for i in p["images"]) == 4 for k in sessions[s])
    train, val, test = (captured(parts[s]) for s in ("train", "val", "test"))
    assert min(val) - max(train) >= timedelta(hours=36) and min(test) - max(val) >= timedelta(hours=36)
    assert "8 images left out: within --gap 36h of the next split" in "\n".join(lines)


def test_bad_input(tmp_path):
    ann, images = write_dataset(tmp_path, ["a.jpg", "b.jpg"], [START, None])
    out = tmp_path / "data"
    with pytest.raises(UserError, match="--gap '7x': expected a duration"):
        split_dataset(ann, images, out, by_time=True, gap="7x")
    with pytest.raises(UserError, match="--time-from '\\(': not a regular expression"):
        split_dataset(ann, images, out, time_from="(")
    with pytest.raises(UserError, match="no image has a capture time from --time-from"):
        split_dataset(ann, images, out, time_from=r"(\d{8})")
    with pytest.raises(UserError, match="cannot be combined"):
        split_dataset(ann, images, out, by_time=True, kfold=3)
    assert not out.exists()


def test_time_text_forms():
    assert parse_time("20240131") == datetime(2024, 1, 31)
    assert parse_time("20240131153000") == datetime(2024, 1, 31, 15, 30)
    assert parse_time("1706715000") == datetime(2024, 1, 31, 15, 30)
    assert parse_time("1706715000000") == datetime(2024, 1, 31, 15, 30)
    assert parse_time("2024-01-31T16:30:00+01:00") == datetime(2024, 1, 31, 15, 30)
    assert parse_time("31.01.2024", "%d.%m.%Y") == datetime(2024, 1, 31)
    assert parse_time("frame12") is None and parse_time("20241399") is None
    assert parse_gap("2w") == timedelta(days=14) and parse_gap("90") == timedelta(seconds=90)
