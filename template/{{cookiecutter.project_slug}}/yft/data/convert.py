"""Convert labels from YOLO, Pascal VOC, LabelMe, CVAT, Label Studio and COCO files to this
project's COCO format (and COCO back to YOLO).

One reader per format (yft/data/formats/) gives images and boxes in pixels; the shared builder
(yft/data/builder.py) checks every box the same way and numbers everything; the writer
(yft/data/writer.py) writes the COCO file and a JSON report beside it. Every annotation of the
source ends up as a box or in the report's "not converted" table, counted by reason and printed;
--strict makes any of them a failure. Images without labels are kept as negatives (an error with
--require-labels); a label without its image is an error (counted with --skip-missing-images).
The first problem found stops the conversion with one line naming the file, and nothing is written.
"""

import gc
import os
from contextlib import contextmanager
from pathlib import Path

from yft.data.builder import Builder, ClassMap, Report, shown
from yft.data.formats import FORMATS, reader
from yft.data.formats.common import Context, run_chunks, size_of, utf8
from yft.data.writer import check_target, report_path, write_coco, write_report, write_yolo
from yft.io import IMAGE_SUFFIXES
from yft.project import UserError

CHOICES = {
    "difficult": ("keep", "drop"),
    "rotated": ("error", "enclose"),
    "to": ("coco", "yolo"),
    "voc_convention": ("edge", "devkit"),
}


def convert(
    fmt,
    sources,
    images,
    out,
    class_names,
    category_ids,
    mapping=(),
    drop_unknown=False,
    require_labels=False,
    difficult="keep",
    to="coco",
    *,
    strict=False,
    force=False,
    skip_missing_images=False,
    names=None,
    rotated="error",
    annotation="first",
    predictions=False,
    subset=None,
    voc_convention="edge",
):
    """Convert and write; returns a summary dict. Nothing is written when anything fails."""
    if fmt not in FORMATS:
        raise UserError(f"--from {fmt}: expected one of {', '.join(FORMATS)}")
    options = {"difficult": difficult, "rotated": rotated, "to": to, "voc_convention": voc_convention}
    for key, value in options.items():
        if value not in CHOICES[key]:
            raise UserError(f"--{key.replace('_', '-')} {value}: expected {' or '.join(CHOICES[key])}")
    sources = [Path(utf8(s)) for s in sources or ()]
    if not sources:
        raise UserError("--src: give the labels (a folder or a file)")
    for s in sources:
        if not s.exists():
            raise UserError(f"{s}: not found")
    if fmt != "coco" and len(sources) != 1:
        raise UserError(f"--from {fmt}: one --src only (merging is for COCO files)")
    if to == "yolo" and fmt != "coco":
        raise UserError("--to yolo converts a COCO file: use --from coco")
    images = [images] if isinstance(images, (str, Path)) else list(images or ())
    if fmt != "coco" and len(images) > 1:
        raise UserError(f"--from {fmt}: one --images folder")
    if fmt in ("cvat", "labelstudio") and sources[0].is_dir():
        sources, root = [_export_file(fmt, sources[0])], sources[0]
        if not images and (root / "images").is_dir():
            images = [root / "images"]  # CVAT's export with images: annotations.xml + images/
    if fmt != "coco" and not images:
        if fmt in ("yolo", "labelme") and sources[0].is_dir():
            images = [sources[0]]  # an export's root holds its images
        else:
            raise UserError(f"--from {fmt}: --images DIR is required (image sizes and negatives)")
    if annotation != "first" and fmt != "labelstudio":
        raise UserError("--annotation is for --from labelstudio")
    if subset is not None and fmt != "cvat":
        raise UserError("--subset is for --from cvat (project exports)")
    if names is not None and fmt != "yolo":
        raise UserError("--names is for --from yolo")
    out = Path(out)
    protected = [Path(p) for p in [*sources, *(images or ()), *([names] if names else [])]]
    _not_an_input(out, protected)
    classes = ClassMap(class_names, category_ids, mapping, drop_unknown)
    context = dict(
        skip_missing_images=skip_missing_images,
        names=names,
        rotated=rotated,
        annotation=annotation,
        predictions=predictions,
        difficult=difficult,
        voc_convention=voc_convention,
        require_labels=require_labels,
    )
    if fmt == "cvat" and subset == "all":
        from yft.data.formats import cvat

        root = cvat.load(sources[0])
        parts = cvat.subsets(root) or [None]
        outs = [
            out if part is None else out.with_name(f"{out.stem}_{part}{out.suffix or '.json'}")
            for part in parts
        ]
        for target in outs:
            _not_an_input(target, protected)
            check_target(target, force)
        with _no_cycle_collection():
            done = [
                _convert(fmt, sources, images, target, classes, part, strict, context, cvat_root=root)
                for part, target in zip(parts, outs)
            ]
            for _, write in done:  # every subset converted before any file is written
                write()
        return {"parts": [summary for summary, _ in done]}
    check_target(out, force, folder=to == "yolo")
    with _no_cycle_collection():
        summary, write = _convert(fmt, sources, images, out, classes, subset, strict, context, to)
        write()
        return summary


@contextmanager
def _no_cycle_collection():
    """A conversion allocates about ten objects per box (parsed tuples, the COCO dicts) and makes
    no reference cycles, so CPython's cycle collector only re-walks them, ever more of them:
    20% of a 20k-image, 80k-box conversion (measured on Python 3.11). Reference counting still
    frees everything; the collector is back on when the conversion ends, whatever happens."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _not_an_input(out, inputs):
    """UserError when writing `out` (or its report) would replace an input: a --src file, a file
    inside a --src or --images folder (obj.names, a label, an image), --names. --force does not
    change this: it replaces earlier outputs (known by the report beside them), never what the
    conversion reads."""
    earlier_output = report_path(out).is_file()
    for target in (out, report_path(out)):
        target = Path(os.path.abspath(target))
        for item in inputs:
            item = Path(os.path.abspath(item))
            inside = item.is_dir() and target.exists() and item in target.parents and not earlier_output
            if target == item or inside:
                raise UserError(
                    f"{out}: the output would overwrite {target} of the input {item}; "
                    "choose an --out outside it"
                )


def _export_file(fmt, folder):
    """The annotation file of an export's root folder (CVAT: annotations.xml; Label Studio: its JSON)."""
    if fmt == "cvat" and (folder / "annotations.xml").is_file():
        return folder / "annotations.xml"
    found = sorted(folder.glob("*.xml" if fmt == "cvat" else "*.json"))
    if len(found) != 1:
        raise UserError(
            f"{folder}: expected one {'XML' if fmt == 'cvat' else 'JSON'} export file here, "
            f"found {len(found)}; give the file as --src"
        )
    return found[0]


def _convert(fmt, sources, images, out, classes, subset, strict, context, to="coco", cvat_root=None):
    """(summary, write): the conversion checked in memory, and the function that writes it."""
    report = Report()
    ctx = Context(images[0] if fmt != "coco" else None, report, **context)
    if ctx.index is not None and not ctx.index.files and fmt != "labelme":  # LabelMe may embed them
        raise UserError(
            f"{ctx.index.root}: no images in this folder ({', '.join(IMAGE_SUFFIXES)}); "
            "give the image folder with --images"
        )
    builder = Builder(classes, report)
    extra = {}
    read = reader(fmt)
    if fmt == "yolo":
        entries, extra["class_table"] = read(sources[0], ctx, classes.class_names)
        extra["class_table"]["map"] = [classes.target(n) for n in extra["class_table"]["names"]]
    elif fmt == "cvat":
        entries, excluded = read(sources[0], ctx, root=cvat_root, subset=subset)
        ctx.excluded.update(excluded)
    elif fmt == "coco":
        entries, root = read(sources, ctx, images)
        extra["images_root"] = str(root) if root else None
    else:
        entries = read(sources[0], ctx)
    read_any = False
    for rel, width, height, boxes, where in entries:
        builder.add(rel, width, height, boxes, where)
        read_any = True
    if not read_any:
        # a wrong --src or --from would otherwise turn every image into a negative, exit 0
        if fmt in ("yolo", "voc", "labelme"):
            kind = {"yolo": ".txt label", "voc": "VOC .xml", "labelme": "LabelMe .json"}[fmt]
            raise UserError(
                f"{sources[0]}: no {kind} files found (is --from {fmt} the export's format, "
                "and --src its label folder?)"
            )
        raise UserError(f"{sources[0]}: nothing to convert (no images or tasks in it)")
    builder.excluded |= ctx.excluded
    if ctx.index is not None:
        builder.add_negatives(
            ctx.index,
            context["require_labels"],
            "image without a label file"
            if fmt in ("yolo", "voc", "labelme")
            else f"image without labels in {sources[0]}",
        )
    root = ctx.index.root if ctx.index is not None else None
    coco = builder.coco(
        f"converted from {fmt} by yft",
        sizes=lambda names: run_chunks(size_of, [str(root / n) for n in names]),
        check_sizes=ctx.index.known if ctx.index is not None else (),
    )
    if to == "yolo":
        for ann in coco["annotations"]:
            if ann["iscrowd"]:
                report.skip("crowd box (YOLO has no crowd flag)", f"annotation {ann['id']}")
    if strict and report.not_converted:
        raise UserError(
            f"--strict: {sum(report.not_converted.values())} annotations not converted ("
            + "; ".join(f"{k}: {v}" for k, v in report.not_converted.most_common())
            + ")"
        )
    if not coco["images"]:
        raise UserError(
            f"{sources[0]}: nothing to convert (no images in it"
            + (" nor in --images)" if ctx.index is not None else ")")
        )
    # what is written: YOLO files leave crowd boxes out (counted above)
    written = [a for a in coco["annotations"] if not (to == "yolo" and a["iscrowd"])]
    annotated = len({a["image_id"] for a in written})
    summary = {
        "out": str(out),
        "format": fmt,
        "images": len(coco["images"]),
        "boxes": len(written),
        "negatives": len(coco["images"]) - annotated,
        **report.as_dict(),
        **extra,
        "report": str(report_path(out)),
    }

    def write():
        if to == "yolo":
            write_yolo(out, coco, classes)
        else:
            write_coco(out, coco)
        write_report(out, summary)

    return summary, write


def format_summary(summary):
    if "parts" in summary:
        return "\n".join(format_summary(part) for part in summary["parts"])
    lines = [
        f"wrote {summary['out']}: {summary['images']} images, {summary['boxes']} boxes, "
        f"{summary['negatives']} negatives (images without boxes, kept)"
    ]
    table = summary.get("class_table")
    if table:
        lines.append(f"YOLO class indices (names from {table['source']}):")
        lines += [
            f"  {i:>3}  {shown(name):<20} -> {target or 'not an Exp class'}"
            for i, (name, target) in enumerate(zip(table["names"], table["map"]))
        ]
    if summary.get("images_root"):
        lines.append(
            f"image file names are relative to {summary['images_root']} (give it as --images to split)"
        )
    if summary["not_converted"]:
        lines.append(
            f"not converted: {sum(summary['not_converted'].values())} (--strict makes this an error)"
        )
        lines += [
            f"  {count:>6}  {reason}  e.g. {summary['examples'][reason][0]}"
            for reason, count in sorted(summary["not_converted"].items(), key=lambda kv: -kv[1])
        ]
    for reason, count in sorted(summary["changed"].items(), key=lambda kv: -kv[1]):
        lines.append(f"changed: {count} x {reason}, e.g. {summary['examples'][reason][0]}")
    lines += [f"note: {note}" for note in summary["notes"][:10]]
    if len(summary["notes"]) > 10:
        lines.append(f"note: ... {len(summary['notes']) - 10} more in the report")
    lines.append(f"report: {summary['report']}")
    return "\n".join(lines)


def main(argv=None):
    """`python -m yft.data.convert`: the converter without loading the Exp (scripts, benchmarks)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="fmt", required=True, choices=FORMATS)
    parser.add_argument("--src", action="append", required=True)
    parser.add_argument("--images", action="append")
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", required=True, help="comma-separated class names (ids 1, 2, ...)")
    parser.add_argument("--to", default="coco")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.classes.split(",")]
    try:
        summary = convert(
            args.fmt,
            args.src,
            args.images,
            args.out,
            names,
            range(1, len(names) + 1),
            to=args.to,
            force=args.force,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
