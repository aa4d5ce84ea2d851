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
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
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
        # "fresh": only our classes; "keep_coco": COCO's 80 first, ours after them.
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
        # Multiscale training: each 10 iterations pick a size in input_size +- range*32 px.
        self.multiscale = True

        # ---------------- training ---------------- #
        # Total batch size across devices; LR = basic_lr_per_img * batch_size (linear scaling).
        self.batch_size = 16
        # Finetuning starts lower than YOLOX's from-scratch 0.01/64: 1e-3 at batch 16.
        self.basic_lr_per_img = 1e-3 / 16
        # Warmup from warmup_lr to the base LR over this many epochs, then cosine decay.
        self.warmup_epochs = 3
        self.max_epoch = 80
        # The last epochs train without mosaic/mixup and with the L1 box loss, as YOLOX does.
        self.no_aug_epochs = 10
        # Exponential moving average of the weights (evaluated and exported).
        self.ema = True
        self.ema_decay = 0.9998
        # Validate every N epochs (the best checkpoint is chosen on val mAP50:95).
        self.eval_interval = 1
        # Keep a checkpoint of every epoch besides last and best.
        self.save_history_ckpt = False
        # Where runs go, relative to the project root.
        self.output_dir = "runs"
        # Experiment tracker: tensorboard, mlflow, wandb or none.
        self.tracker = "tensorboard"
        # Random seed for the data order and augmentation (None: a fresh one each run).
        self.seed = None

        # ---------------- evaluation and deployment ---------------- #
        # Score threshold for mAP (low on purpose: AP integrates over all scores).
        self.test_conf = 0.01
        # NMS IoU threshold.
        self.nmsthre = 0.65
        # Score threshold for drawn predictions.
        self.predict_conf = 0.3
        # ONNX opset for export.
        self.onnx_opset = 17

    # ------------------------------------------------------------------ derived values
    def set_architecture(self, model_name):
        """Set depth, width and depthwise convs for a YOLOX size (yolox_nano ... yolox_x)."""
        self.depth, self.width, self.depthwise, _ = ARCHITECTURES[model_name]
        self.model_name = model_name

    def category_ids(self):
        """COCO category id of each class index (the order of `class_names`)."""
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
            where = " (COCO's 80 classes come first in keep_coco mode)" if self.class_mode == "keep_coco" else ""
            raise ValueError(f"class names appear twice: {', '.join(repeated)}{where}")
        if self.class_mode == "keep_coco" and tuple(self.class_names[:80]) != COCO_CLASS_NAMES:
            raise ValueError("class_mode keep_coco needs COCO's 80 class names first in class_names")
        for name in ("input_size", "test_size"):
            size = getattr(self, name)
            if any(s % 32 for s in size):
                raise ValueError(f"{name} {tuple(size)} must be multiples of 32")

    # ------------------------------------------------------------------ builders
    def get_model(self):
        """A freshly initialised YOLOX model (never a cached one).

        Kept on `self.model` only because YOLOX's own `get_optimizer` reads it there.
        """
        from yolox.models import YOLOX, YOLOPAFPN, YOLOXHead

        in_channels = [256, 512, 1024]
        backbone = YOLOPAFPN(
            self.depth, self.width, in_channels=in_channels, act=self.act, depthwise=self.depthwise
        )
        head = YOLOXHead(
            self.num_classes, self.width, in_channels=in_channels, act=self.act,
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
