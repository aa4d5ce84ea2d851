"""COCO bbox evaluation with the fastest engine installed; every engine gives pycocotools' numbers.

Engines, fastest first:
  "faster"       faster-coco-eval (C++ evaluate + accumulate; a project dependency)
  "yolox"        YOLOX's COCOeval_opt (C++; only where yolox was installed with its compiled op,
                 which `invoke setup` leaves out so that no compiler is needed)
  "pycocotools"  the reference implementation

"auto" takes the first that imports. tests/test_eval_metrics.py and benchmarks/eval_bench.py
check that the 12 summary numbers and the precision arrays are identical to pycocotools'.
"""

import contextlib
import io

ENGINES = ("faster", "yolox", "pycocotools")


def available_engines():
    """The engines that import here, fastest first."""
    found = []
    for name in ENGINES:
        try:
            _evaluator_class(name)
        except ImportError:
            continue
        found.append(name)
    return found


def _evaluator_class(engine):
    if engine == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    if engine == "yolox":
        import importlib.util

        from pycocotools.coco import COCO

        # Without the prebuilt op, COCOeval_opt would compile it with a C++ compiler on first use.
        if importlib.util.find_spec("yolox.layers.fast_cocoeval") is None:
            raise ImportError("yolox was installed without its compiled COCOeval op")
        from yolox.layers import COCOeval_opt

        return COCO, COCOeval_opt
    if engine == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise ValueError(f"unknown COCO evaluation engine {engine!r}: use one of {', '.join(ENGINES)}")


def pick_engine(engine="auto"):
    if engine != "auto":
        return engine
    return available_engines()[0]


def gt_dict(coco_gt):
    """A COCO dataset dict from a dict or a pycocotools COCO object."""
    return coco_gt if isinstance(coco_gt, dict) else coco_gt.dataset


def make_gt(dataset, engine):
    """The engine's COCO ground-truth object for a dataset dict."""
    coco_class, _ = _evaluator_class(engine)
    with contextlib.redirect_stdout(io.StringIO()):
        if engine == "faster":
            return coco_class(dataset)
        coco = coco_class()
        coco.dataset = dataset
        coco.createIndex()
        return coco


def run_cocoeval(coco_gt, detections, engine="auto", gt_object=None):
    """evaluate + accumulate + summarize on non-empty `detections` (COCO result dicts).

    Returns the evaluator: `.stats` (the 12 numbers, -1 where undefined), `.eval["precision"]`
    [iou, recall, class, area, max_dets], `.eval["scores"]`, `.params`.
    The caller's detection dicts are not modified.
    """
    engine = pick_engine(engine)
    _, evaluator_class = _evaluator_class(engine)
    gt = gt_object if gt_object is not None else make_gt(gt_dict(coco_gt), engine)
    # loadRes adds keys (area, id, segmentation) to the dicts: give it shallow copies.
    copies = [dict(d) for d in detections]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copies)
        if engine == "faster":
            evaluator = evaluator_class(
                gt, dt, "bbox", print_function=lambda *a, **k: None, separate_eval=True
            )
        else:
            evaluator = evaluator_class(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    evaluator.engine = engine
    return evaluator
