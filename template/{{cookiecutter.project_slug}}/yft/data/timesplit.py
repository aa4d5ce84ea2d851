"""Time-aware splits (`invoke split --by-time`): the oldest images train, the newest validate and
test, as the finetuning guide asks for time series ("use future dates for testing").

Capture time comes from EXIF DateTimeOriginal (tag 0x9003 in the Exif IFD, read from the file's
header by Pillow), or with --time-from REGEX from the file name: the regex's first group (or the
whole match) read with --time-format (strptime codes) or, without it, as 20240131, 202401311530,
20240131153000, Unix seconds (10 digits) or milliseconds (13), or ISO 8601 (2024-01-31T15:30:00).
Times are compared as written (local camera time; an offset in an ISO time is honoured).

Units: an image, or with --group-by all images of one group (a group never straddles splits); a
unit's time is the span of its timed images. Units are ordered by start time and cut by image
count at the --train/--val fractions. --gap leaves a buffer: a unit of an earlier split that ends
less than the gap before the next split starts is left out (counted and listed). Images without
a time are counted by reason and placed by the default (stratified, seeded) rule, or refused
with --strict.
"""

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from yft.data.assign import assign, groups_of, subset
from yft.project import UserError

EXIF_IFD, DATETIME_ORIGINAL = 0x8769, 0x9003
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DIGIT_FORMATS = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


def parse_gap(text):
    """'7d', '12h', '30m', '90s', '2w' or plain seconds -> timedelta."""
    if text in (None, "", "0"):
        return timedelta(0)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not match:
        raise UserError(f"--gap {text!r}: expected a duration such as 7d, 12h, 30m, 90s or 2w")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2) or "s"])


def exif_time(path):
    """EXIF DateTimeOriginal of an image as a datetime, or (None, reason)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            text = img.getexif().get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None, "unreadable image or EXIF"
    if not text:
        return None, "no EXIF DateTimeOriginal"
    text = str(text).strip("\x00 ")
    try:
        return datetime.strptime(text, "%Y:%m:%d %H:%M:%S"), None
    except ValueError:
        return None, "EXIF DateTimeOriginal not a date"  # e.g. '0000:00:00 00:00:00' from some cameras


def parse_time(text, fmt=None):
    """A time from file-name text; None when it cannot be read."""
    try:
        if fmt:
            return datetime.strptime(text, fmt)
        if text.isdigit() and len(text) in DIGIT_FORMATS:
            return datetime.strptime(text, DIGIT_FORMATS[len(text)])
        if text.isdigit() and len(text) in (10, 13):
            seconds = int(text) / (1000 if len(text) == 13 else 1)
            return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)
        value = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if value.tzinfo is not None:  # compare everything in UTC, naive
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def name_time(name, pattern, fmt=None):
    match = pattern.search(name)
    if not match:
        return None, "file name does not match --time-from"
    value = parse_time(match.group(1) if pattern.groups else match.group(0), fmt)
    return (value, None) if value else (None, "matched text is not a time (see --time-format)")


def capture_times(coco, images, time_from=None, time_format=None):
    """[datetime or None] per image and {reason: [file names]} for the images without one."""
    pattern = None
    if time_from:
        try:
            pattern = re.compile(time_from)
        except re.error as err:
            raise UserError(f"--time-from {time_from!r}: not a regular expression ({err})") from None
    times, missing = [], {}
    for image in coco["images"]:
        name = image["file_name"]
        value, reason = name_time(name, pattern, time_format) if pattern else exif_time(Path(images) / name)
        times.append(value)
        if reason:
            missing.setdefault(reason, []).append(name)
    return times, missing


def order_units(groups, times):
    """Timed units as (start, end, members) in time order, and the members of untimed units."""
    timed, untimed = [], []
    for key, members in groups.items():
        stamps = [times[n] for n in members if times[n] is not None]
        if stamps:
            timed.append((min(stamps), max(stamps), key, members))
        else:
            untimed.extend(members)
    timed.sort(key=lambda u: (u[0], u[1], u[2]))
    return [(start, end, members) for start, end, _, members in timed], untimed


def cut(units, ratios):
    """Split index per unit: units in time order, each to the split its middle image falls in."""
    total = sum(len(m) for _, _, m in units)
    bounds, acc = [], 0.0
    for r in ratios:
        acc += r
        bounds.append(acc * total)
    folds, seen = [], 0
    for _, _, members in units:
        middle = seen + len(members) / 2
        folds.append(
            next(
                (i for i, b in enumerate(bounds) if middle < b and ratios[i] > 0),
                max(i for i, r in enumerate(ratios) if r > 0),
            )
        )
        seen += len(members)
    return folds


def apply_gap(units, folds, gap):
    """Units of an earlier split ending less than `gap` before the next split starts: set to None."""
    if gap <= timedelta(0):
        return []
    dropped = []
    for later in sorted(set(folds))[1:]:
        start = min(u[0] for u, f in zip(units, folds) if f == later)
        for n, (unit, fold) in enumerate(zip(units, folds)):
            if fold is not None and fold < later and unit[1] > start - gap:
                folds[n] = None
                dropped.extend(unit[2])
    return dropped


def time_assign(
    coco, images, ratios, seed, group_by=None, time_from=None, time_format=None, gap=None, strict=False
):
    """Split index (or None: left in a gap) per image, and printable lines about the times."""
    gap_text, gap = gap, parse_gap(gap)
    times, missing = capture_times(coco, images, time_from, time_format)
    count = sum(len(v) for v in missing.values())
    source = f"--time-from {time_from!r}" if time_from else "EXIF DateTimeOriginal"
    if strict and count:
        reason, names = next(iter(missing.items()))
        raise UserError(
            f"{Path(images) / names[0]}: {reason}; {count} of {len(times)} images have no capture "
            f"time from {source} (--strict refuses them)"
        )
    if count == len(times):
        raise UserError(
            f"{images}: no image has a capture time from {source} "
            + ("(check the regex)" if time_from else "(try --time-from REGEX on the file names)")
        )
    units, untimed = order_units(groups_of(coco, group_by), times)
    folds = cut(units, ratios)
    dropped = apply_gap(units, folds, gap)
    per_image = [None] * len(times)
    for (_, _, members), fold in zip(units, folds):
        for n in members:
            per_image[n] = fold
    lines = [
        f"by time ({source}): {len(times) - count} of {len(times)} images timed, "
        f"{len(units)} {'groups' if group_by else 'images'} in time order"
    ]
    if untimed:  # the default rule: a stratified, seeded split of those images at the same fractions
        sub = subset(coco, untimed)
        for n, fold in zip(untimed, assign(sub, list(ratios), seed, group_by)):
            per_image[n] = fold
        lines.append(
            f"{len(untimed)} images without a capture time were split by the default (stratified) "
            "rule; --strict refuses them"
        )
    for reason, names in missing.items():
        lines.append(f"  {len(names)} {reason}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")
    if dropped:
        lines.append(
            f"{len(dropped)} images left out: within --gap {gap_text} of the next split "
            f"({', '.join(coco['images'][n]['file_name'] for n in dropped[:3])}"
            f"{' ...' if len(dropped) > 3 else ''})"
        )
    return per_image, times, lines


def stamp(coco, times):
    """A copy of the COCO dict whose timed images carry COCO's `date_captured` field."""
    images = []
    for image, value in zip(coco["images"], times):
        images.append(dict(image, date_captured=value.strftime("%Y-%m-%d %H:%M:%S")) if value else image)
    return dict(coco, images=images)


def time_range(coco):
    """(first, last, timed images) of a COCO dict's `date_captured` fields, or None."""
    stamps = []
    for image in coco["images"]:
        value = parse_time(str(image.get("date_captured") or "").replace(" ", "T"))
        if value:
            stamps.append(value)
    return (min(stamps), max(stamps), len(stamps)) if stamps else None


def range_lines(parts):
    lines = []
    for split, coco in parts.items():
        found = time_range(coco)
        if found:
            first, last, n = found
            lines.append(
                f"{split:>5}: {first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} ({n} timed images)"
            )
    return lines
