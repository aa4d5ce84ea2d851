"""Finetuning defaults on top of Megvii's YOLOX `Exp`.

The project's `exps/<dataset>_<model>.py` subclasses `FinetuneExp` and sets only its answers
(classes, model size, input size, epochs). Everything else below is a default taken from the
finetuning guide; override it in the Exp file or per run (`invoke train --set key=value`).

The Exp stays a settings object: `get_model()` builds a fresh model on every call (YOLOX's
version re-initialises the biases of a cached model, wiping loaded weights), and nothing here
touches a device.
"""

import os

import torch.nn as nn
from yolox.data.datasets import COCO_CLASSES
from yolox.exp import Exp as YoloxExp

COCO_CLASS_NAMES = tuple(COCO_CLASSES)

# COCO's own category ids for its 80 classes (ids 1..90 with gaps). In the keep-COCO class
# mode our categories follow with ids 91, 92, ... so COCO's ids keep their meaning.
COCO_CATEGORY_IDS = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)

# depth, width, depthwise convolutions, default input size: YOLOX's published architectures.
ARCHITECTURES = {
    "yolox_nano": (0.33, 0.25, True, 416),
    "yolox_tiny": (0.33, 0.375, False, 416),
    "yolox_s": (0.33, 0.50, False, 640),
    "yolox_m": (0.67, 0.75, False, 640),
    "yolox_l": (1.00, 1.00, False, 640),
    "yolox_x": (1.33, 1.25, False, 640),
}


class FinetuneExp(YoloxExp):
    def __init__(self):
        super().__init__()
        # ---------------- classes ---------------- #
        # "fresh": only our classes; "keep_coco": COCO's 80 first, ours after them;
        # "replace": COCO's 80 with chosen slots renamed (see replace_coco_classes).
        self.class_mode = "fresh"
        # Class names in the order of the model's class outputs (the Exp file sets them).
        self.class_names = ()

        # ---------------- model ---------------- #
        self.model_name = "yolox_s"
        self.depthwise = False

        # ---------------- data ---------------- #
        # Loader worker processes (0 loads in the training process).
        self.data_num_workers = min(4, os.cpu_count() or 1)
        # Image folders inside data_dir, one per split (the COCO layout).
        self.train_name, self.val_name, self.test_name = "train2017", "val2017", "test2017"
        # Multiscale training: each 10 iterations pick a size in input_size +- range*32 px
        # (the range shrinks for small inputs to at most a quarter of the size).
        self.multiscale = True

        # ---------------- training ---------------- #
        # Total batch size across devices; LR = basic_lr_per_img * batch_size (linear scaling).
        self.batch_size = 16
        # Finetuning starts lower than YOLOX's from-scratch 0.01/64: 1e-3 at batch 16 (training
        # without starting weights uses scratch_basic_lr_per_img instead).
        self.basic_lr_per_img = 1e-3 / 16
        # Warmup from warmup_lr to the base LR: warmup_iters iterations when > 0, else
        # warmup_epochs epochs (the guide suggests 500-1000 iterations).
        self.warmup_epochs = 3
        self.warmup_iters = 0
        # "yoloxwarmcos" (cosine to min_lr_ratio, flat in the no-aug tail) or "step".
        self.scheduler = "yoloxwarmcos"
        # step schedule: multiply the LR by lr_step_gamma at each of these epochs.
        self.lr_step_epochs = ()
        self.lr_step_gamma = 0.1
        # Reduce on plateau: when val mAP has not improved for this many epochs, multiply the
        # LR by plateau_factor (0 turns it off).
        self.plateau_patience = 0
        self.plateau_factor = 0.5
        self.max_epoch = 80
        # The last epochs train without mosaic/mixup and with the L1 box loss, as YOLOX does.
        self.no_aug_epochs = 10
        # Stop when val mAP50:95 has not improved for this many epochs (0: never).
        self.early_stop_patience = 15
        # Gradient accumulation: optimiser steps every `accumulate` batches, so the effective
        # batch is batch_size * accumulate (the LR follows the effective batch).
        self.accumulate = 1
        # Clip the gradient norm to this value (0: off). The norm is logged either way.
        self.grad_clip = 0.0
        # Exponential moving average of the weights (evaluated and exported).
        self.ema = True
        self.ema_decay = 0.9998

        # ---------------- starting weights ---------------- #
        # Where training starts: "auto" (the official COCO-pretrained weights of model_name, from
        # the download cache, downloaded when missing), a checkpoint path, or None (random
        # weights, the from-scratch profile below; `--set pretrained=none`). `invoke train --ckpt
        # FILE` wins over this, `--from-scratch` means None.
        self.pretrained = "auto"
        # The class names of the starting checkpoint's outputs, in order (COCO's 80 for the
        # official weights). Our classes with one of these names start from that output's
        # weights (head surgery); the others start fresh. A checkpoint that stores its own
        # class names (ours do) uses those instead.
        self.pretrained_classes = COCO_CLASS_NAMES
        # Classes whose class weights come from the starting checkpoint (by name) but that the
        # training data never shows (keep_coco's 80, a base model's old classes) keep those
        # weights frozen; trained, they would only learn "not this class" and be forgotten.
        self.freeze_unseen_classes = True
        # From-scratch profile, used in place of basic_lr_per_img and warmup_epochs when there
        # are no starting weights: YOLOX's own from-scratch values (0.01 at batch 64).
        self.scratch_basic_lr_per_img = 0.01 / 64
        self.scratch_warmup_epochs = 5

        # ---------------- transfer learning ---------------- #
        # full | head (backbone and neck frozen) | progressive (unfreeze on a schedule) |
        # classes (only the class predictions train: add classes, keep the old ones' accuracy)
        self.strategy = "full"
        # progressive: (part, epoch) pairs; a part trains from that epoch on (0-based).
        self.progressive_schedule = (
            ("neck", 3),
            ("dark5", 6),
            ("dark4", 9),
            ("dark3", 12),
            ("dark2", 15),
            ("stem", 15),
        )
        # Layer-wise learning rates: multipliers of the base LR per part of the network.
        self.backbone_lr_mult = 1.0
        self.neck_lr_mult = 1.0
        self.head_lr_mult = 1.0

        # ---------------- loss ---------------- #
        # Weights of the loss parts (YOLOX's iou part already carries its factor 5).
        self.iou_loss_weight = 1.0
        self.obj_loss_weight = 1.0
        self.cls_loss_weight = 1.0
        self.l1_loss_weight = 1.0
        # Label smoothing of the class targets (0.0-0.1; needs more than one class).
        self.label_smoothing = 0.0
        # Focal modulation of the objectness and class losses (0: plain BCE; 1.5-2 typical).
        self.focal_gamma = 0.0
        # Batched SimOTA assignment and loss (same results as YOLOX's, much faster); False
        # uses YOLOX's own per-image implementation.
        self.fast_loss = True
        # Step speed-ups that change no result: channels_last memory layout (faster convs on
        # recent GPUs) and torch.compile of the backbone and neck (minutes of compile first).
        self.channels_last = False
        self.compile = False

        # ---------------- sampling and augmentation extras ---------------- #
        # Repeat-factor sampling of images with rare classes (LVIS's t, e.g. 0.1; 0: off).
        self.repeat_threshold = 0.0
        # Copy-paste for small objects: chance per image, objects per paste, max object area
        # as a fraction of the image.
        self.copy_paste_prob = 0.0
        self.copy_paste_max = 3
        self.copy_paste_max_area = 0.05
        # Image cache: None, "ram" or "disk" (keyed by input size).
        self.cache = None

        # ---------------- hyperparameter search (invoke tune) ---------------- #
        # Changes to the search space of `invoke tune`: each entry replaces or adds one setting's
        # range in yft.train.tune_space.default_space (LR per image, warmup, weight decay,
        # mosaic/mixup, strategy, input size, EMA); None removes one. Ranges as Optuna's:
        # {"low": 1e-5, "high": 1e-3, "log": True}, {"low": 0, "high": 5} or {"choices": [...]}.
        # E.g. {"input_size": {"choices": [320, 416]}, "ema": None}.
        self.tune_space = {}

        # ---------------- checkpoints and logging ---------------- #
        # Validate every N epochs (best.pth is chosen on val mAP50:95; the last epoch always).
        self.eval_interval = 1
        # Keep epoch_N.pth every ckpt_interval epochs (0: only last and best), at most keep_last.
        self.ckpt_interval = 10
        self.keep_last = 3
        # Where runs go, relative to the project root.
        self.output_dir = "runs"
        # Experiment tracker: tensorboard, mlflow, wandb or none (a JSONL/CSV log is always written).
        self.tracker = "tensorboard"
        # Log every N iterations.
        self.log_interval = 10
        # Random seed for the weights of new layers, the data order and augmentation: the same
        # seed gives the same run on the same machine. Vary it (--set seed=N) to see how much
        # results move between runs; None draws a fresh one each run.
        self.seed = 0
        # Deterministic algorithms and single-process loading: bit-exact reruns and resumes
        # (slower).
        self.deterministic = False

        # ---------------- evaluation and deployment ---------------- #
        # Score threshold for mAP (low on purpose: AP integrates over all scores).
        self.test_conf = 0.01
        # NMS IoU threshold.
        self.nmsthre = 0.65
        # Score threshold for drawn predictions.
        self.predict_conf = 0.3
        # ONNX opset for export.
        self.onnx_opset = 17
        # Export parity check: validation images for the torch-vs-export mAP comparison
        # (0: all) and the largest allowed mAP50:95 difference (0..1).
        self.parity_images = 200
        self.parity_map_tol = 0.005
        # Most detections per image (per class with ONNX NonMaxSuppression) when NMS is in the graph.
        self.deploy_max_det = 100
        # Release gate (`invoke release`): every check must pass before a release folder is written.
        # Minimum mAP50:95 on the test split (0..1).
        self.release_min_map = 0.25
        # Maximum end-to-end latency (ms, p50, pre- and post-processing included) on this backend
        # (torch, onnx or trt) at this batch size.
        self.release_max_latency_ms = 100.0
        self.release_latency_backend = "onnx"
        self.release_latency_batch = 1
        # Maximum size of the deployed model file (MB; the ONNX model, or the weights without one).
        self.release_max_model_mb = 100.0
        # Require a robustness run (`invoke robustness`: runs/<exp>/robustness_<split>/robustness.json).
        self.release_require_robustness = True
        # The HTML report (`invoke report`): at most this many validation images in its image
        # browser (those with the most errors first), embedded as JPEGs of at most
        # report_image_size pixels on the long side.
        self.report_max_images = 500
        self.report_image_size = 512

    def non_default_settings(self):
        """{setting: value} of every setting that differs from FinetuneExp's defaults (values as
        JSON-friendly types: tuples become lists, other objects their repr)."""
        defaults = vars(FinetuneExp())
        changed = {}
        for key, value in sorted(vars(self).items()):
            if key.startswith("_") or key in ("model", "exp_file") or callable(value):
                continue  # built objects and bookkeeping, not settings
            if key in defaults and _same(defaults[key], value):
                continue
            changed[key] = _plain(value)
        return changed

    # ------------------------------------------------------------------ derived values
    def set_architecture(self, model_name):
        """Set depth, width and depthwise convs for a YOLOX size (yolox_nano ... yolox_x)."""
        self.depth, self.width, self.depthwise, _ = ARCHITECTURES[model_name]
        self.model_name = model_name

    def replace_coco_classes(self, mapping):
        """Class mode "replace": COCO's 80 outputs, with chosen COCO slots renamed to our classes
        (e.g. {"truck": "forklift"}); a replaced slot starts from the COCO class's weights."""
        unknown = set(mapping) - set(COCO_CLASS_NAMES)
        if unknown:
            raise ValueError(f"not COCO class names: {sorted(unknown)}")
        self.class_mode = "replace"
        self.class_names = tuple(mapping.get(name, name) for name in COCO_CLASS_NAMES)
        self.num_classes = 80

    def category_ids(self):
        """COCO category id of each class index (the order of `class_names`)."""
        if self.class_mode == "replace":
            return list(COCO_CATEGORY_IDS)
        if self.class_mode == "keep_coco":
            ours = len(self.class_names) - len(COCO_CATEGORY_IDS)
            return list(COCO_CATEGORY_IDS) + [91 + i for i in range(ours)]
        return [i + 1 for i in range(len(self.class_names))]

    def check(self):
        """Raise ValueError naming the first inconsistent setting."""
        if not self.class_names:
            raise ValueError("class_names is empty: list your classes in the Exp file")
        if self.num_classes != len(self.class_names):
            raise ValueError(
                f"num_classes is {self.num_classes} but class_names has {len(self.class_names)} names"
            )
        repeated = sorted({n for n in self.class_names if list(self.class_names).count(n) > 1})
        if repeated:
            where = (
                " (COCO's 80 classes come first in keep_coco mode)" if self.class_mode == "keep_coco" else ""
            )
            raise ValueError(f"class names appear twice: {', '.join(repeated)}{where}")
        if self.class_mode == "keep_coco" and tuple(self.class_names[:80]) != COCO_CLASS_NAMES:
            raise ValueError("class_mode keep_coco needs COCO's 80 class names first in class_names")
        for name in ("input_size", "test_size"):
            size = getattr(self, name)
            if any(s % 32 for s in size):
                raise ValueError(f"{name} {tuple(size)} must be multiples of 32")
        # max_epoch=0 used to "finish" and report checkpoints that were never written.
        for name in ("max_epoch", "batch_size", "eval_interval", "log_interval"):
            value = getattr(self, name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is {value!r}: it must be a whole number of at least 1")
        lr = self.basic_lr_per_img
        if not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
            raise ValueError(f"basic_lr_per_img is {lr!r}: it must be a positive number")

    # ------------------------------------------------------------------ builders
    def get_model(self):
        """A freshly initialised YOLOX model (never a cached one).

        Kept on `self.model` only because YOLOX's own `get_optimizer` reads it there.
        """
        from yolox.models import YOLOPAFPN, YOLOX, YOLOXHead

        in_channels = [256, 512, 1024]
        backbone = YOLOPAFPN(
            self.depth, self.width, in_channels=in_channels, act=self.act, depthwise=self.depthwise
        )
        head = YOLOXHead(
            self.num_classes,
            self.width,
            in_channels=in_channels,
            act=self.act,
            depthwise=self.depthwise,
        )
        model = YOLOX(backbone, head)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = 1e-3, 0.03
        model.head.initialize_biases(1e-2)
        model.train()
        self.model = model
        return model


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):  # objects without a plain comparison (arrays)
        return a is b


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)
