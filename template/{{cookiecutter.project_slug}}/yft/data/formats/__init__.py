"""One reader per label format; each gives [(image file name, width, height, boxes, where)] with
boxes [(class name, x, y, w, h, where, attributes)] in pixels for the shared builder."""

import importlib

FORMATS = ("yolo", "voc", "labelme", "cvat", "labelstudio", "coco")


def reader(fmt):
    """The `read` function of a format's module (imported on first use)."""
    return importlib.import_module(f"yft.data.formats.{fmt}").read
