"""Evaluate stage: COCO metrics that match pycocotools, written to a metrics.json."""
