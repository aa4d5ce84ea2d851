import pytest

from yft.exp import ARCHITECTURES, COCO_CLASS_NAMES
from yft.project import UserError, apply_overrides, load_exp


def test_exp_matches_its_classes_and_model():
    exp = load_exp()
    assert exp.num_classes == len(exp.class_names) > 0
    assert len(set(exp.class_names)) == len(exp.class_names)
    depth, width, depthwise, _ = ARCHITECTURES[exp.model_name]
    assert (exp.depth, exp.width, exp.depthwise) == (depth, width, depthwise)
    ids = exp.category_ids()
    assert len(ids) == exp.num_classes and len(set(ids)) == len(ids)
    if exp.class_mode == "keep_coco":
        assert tuple(exp.class_names[:80]) == COCO_CLASS_NAMES and ids[80] == 91


def test_get_model_builds_a_fresh_model_each_time():
    exp = load_exp()
    first, second = exp.get_model(), exp.get_model()
    assert first is not second
    assert first.head.cls_preds[0].out_channels == exp.num_classes


@pytest.mark.parametrize(
    "text, attribute, expected",
    [
        ("max_epoch=5", "max_epoch", 5),
        ("input_size=320,256", "input_size", (320, 256)),
        ("test_size=320", "test_size", (320, 320)),
        ("basic_lr_per_img=1", "basic_lr_per_img", 1.0),
        ("ema=false", "ema", False),
        ("tracker=none", "tracker", "none"),
    ],
)
def test_overrides_are_typed(text, attribute, expected):
    exp = load_exp()
    apply_overrides(exp, [text])
    assert getattr(exp, attribute) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("no_such_setting=1", "no setting named"),
        ("max_epoch", "expected key=value"),
        ("max_epoch=abc", "not a value"),
        ("ema=3", "true or false"),
    ],
)
def test_bad_overrides_are_named(text, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(load_exp(), [text])


def test_inconsistent_exp_is_refused(tmp_path):
    exp_file = tmp_path / "broken_exp.py"
    exp_file.write_text(
        "from yft.exp import FinetuneExp\n"
        "class Exp(FinetuneExp):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.class_names = ('a', 'b')\n"
        "        self.num_classes = 3\n"
    )
    with pytest.raises(UserError, match="broken_exp.py: num_classes is 3"):
        load_exp(exp_file)


@pytest.mark.parametrize(
    "override, message",
    [
        ("max_epoch=0", "max_epoch is 0: it must be a whole number of at least 1"),
        ("batch_size=-4", "batch_size is -4"),
        ("basic_lr_per_img=-0.1", "basic_lr_per_img is -0.1"),
    ],
)
def test_settings_that_cannot_train_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        load_exp(overrides=[override])


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "<<<<<<< before updating\n        self.max_epoch = 10\n=======\n        self.max_epoch = 20\n>>>>>>> after updating\n",
            r"broken_exp_0.py:5: a conflict marker \(<<<<<<<\) is left from `copier update`",
        ),
        ("        self.max_epoch = (10\n", r"broken_exp_1.py:5: '\(' was never closed"),
        (
            "        self.max_epoch = undefined_name\n",
            r"broken_exp_2.py:5: cannot load the Exp \(NameError: name 'undefined_name'",
        ),
    ],
)
def test_a_broken_exp_file_shows_the_real_error_and_line(tmp_path, body, message, request):
    # yolox imports the Exp by module name: a name of its own per case, or it gets the cached one
    exp_file = tmp_path / f"broken_exp_{request.node.callspec.indices['body']}.py"
    exp_file.write_text(
        "from yft.exp import FinetuneExp\n"
        "class Exp(FinetuneExp):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n" + body
    )
    with pytest.raises(UserError, match=message):
        load_exp(exp_file)
