{%- set class_names = cookiecutter.class_names.split(",")|map("trim")|list -%}
{%- set size = cookiecutter.input_size -%}
"""{{ cookiecutter.model }} finetuned on datasets/{{ cookiecutter.dataset_name }}/.

The one settings file of this project: every `invoke` task reads it, and it is a real YOLOX Exp,
so YOLOX's own tools accept it too (`python -m yolox.tools.train -f <this file>` on a GPU).
Settings not listed here keep the finetuning defaults documented in yft/exp.py; copy a line
from there to change it for good, or use `invoke train --set key=value` for one run.
"""

import os

from yft.exp import {% if cookiecutter.class_mode == "keep_coco" %}COCO_CLASS_NAMES, {% endif %}FinetuneExp

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Our classes, in the order of the model's class outputs. The formatter leaves this block as
# generated (one name a line, double quotes), whatever the names hold.
# fmt: off
CLASS_NAMES = (
{%- for name in class_names %}
    "{{ name|replace('\\', '\\\\')|replace('"', '\\"') }}",
{%- endfor %}
)
# fmt: on


class Exp(FinetuneExp):
    def __init__(self):
        super().__init__()
        # ---------------- classes ---------------- #
{%- if cookiecutter.class_mode == "keep_coco" %}
        # COCO's 80 classes keep their pretrained outputs; ours come after them.
        self.class_mode = "keep_coco"
        self.class_names = COCO_CLASS_NAMES + CLASS_NAMES
{%- else %}
        self.class_mode = "fresh"
        self.class_names = CLASS_NAMES
{%- endif %}
        self.num_classes = len(self.class_names)

        # ---------------- model ---------------- #
        # depth, width and depthwise convs of {{ cookiecutter.model }}
        self.set_architecture("{{ cookiecutter.model }}")
{%- if cookiecutter.model in ["yolox_nano", "yolox_tiny"] %}
        # Small models: milder mosaic scale and no mixup, as in YOLOX's own {{ cookiecutter.model }} Exp.
        self.mosaic_scale = (0.5, 1.5)
        self.enable_mixup = False
{%- endif %}

        # ---------------- data ---------------- #
        self.data_dir = os.path.join(
            PROJECT_ROOT,
            "datasets",
            "{{ cookiecutter.dataset_name }}",
        )
        self.train_ann = "instances_train2017.json"
        self.val_ann = "instances_val2017.json"
        self.test_ann = "instances_test2017.json"
        # (height, width), multiples of 32
        self.input_size = ({{ size }}, {{ size }})
        self.test_size = ({{ size }}, {{ size }})

        # ---------------- training ---------------- #
        self.max_epoch = {{ cookiecutter.epochs }}
        self.batch_size = {{ cookiecutter.batch_size }}
        self.tracker = "{{ cookiecutter.tracker }}"
        self.exp_name = os.path.splitext(os.path.basename(__file__))[0]
