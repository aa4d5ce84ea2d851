"""Transfer learning works: measured on CPU with parts that exist offline.

A small "pretrained" model is trained from random weights on three shapes (BASE) and saved in
YOLOX's release format ({"model": state_dict}: no class names, like the official files). With
the same seed, data, hyperparameters and number of iterations:

- finetuned through train(ckpt=...) (what `invoke train --ckpt` runs) onto three *other* shapes,
  it must reach a clearly higher val mAP50 than the same run from random weights. The scratch
  run gets the finetune profile's lr and warmup, so the weights are the only difference.
- keep mode (old classes plus a new one; head surgery by name through pretrained_classes; the new
  images labelled with all four) must learn the new class and keep the old classes' AP50 within
  a tolerance (3/4 of their mean, at most 0.15 lost per class). When the images show only the new class (keep_coco style), the old classes'
  rows stay exactly the checkpoint's (freeze_unseen_classes).

The base checkpoint is trained once per module. The figures each run measured are printed
(pytest -s shows them).
"""

import json

import pytest
import torch

from yft.data.sample import make_sample_dataset
from yft.evaluate.run import evaluate_backend
from yft.inference import TorchBackend
from yft.project import load_exp
from yft.train.checkpoint import load_checkpoint
from yft.train.run import train
from yft.train.transfer import load_pretrained

CPU = torch.device("cpu")
BASE = ("diamond", "cross", "ring")
NEW = ("circle", "square", "triangle")
# One short budget for every finetuning run (iterations = epochs x TRAIN_IMAGES / BATCH).
BATCH, TRAIN_IMAGES, VAL_IMAGES = 8, 48, 48  # 48 val images: 24 moved a class's AP by 0.2 by chance
BASE_EPOCHS, FINETUNE_EPOCHS = 30, 16
LR_PER_IMAGE = 0.01 / 8  # a short schedule wants a high LR; the same for every run compared
# Measured (seed 0, one thread, 48 val images): base model val mAP50 0.277 on its own shapes;
# after 96 iterations on the new shapes, finetuned 0.242 vs from scratch 0.002. Random weights
# learn next to nothing in 96 iterations, so a gain of 0.1 still fails a transfer that does not
# work (a base whose weights did not load, or a head surgery that broke the features) while
# leaving room for other machines' floating-point paths.
MIN_GAIN = 0.1
# Keep mode (measured, seed 0, one thread, 48 val images): old classes' val AP50 after head
# surgery -> after 96 iterations: diamond 0.546 -> 0.478, cross 0.235 -> 0.132, ring 0.147 ->
# 0.170 (mean 0.309 -> 0.260, 84% kept), the new circle 0.000 -> 0.203. The tolerance: the old
# classes keep at least 3/4 of their mean AP50 and none loses more than 0.15.
OLD_AP_KEPT = 0.75
OLD_AP_MAX_LOSS = 0.15


def make_exp(root, classes, **settings):
    exp = load_exp()
    exp.set_architecture("yolox_nano")
    exp.class_mode, exp.class_names, exp.num_classes = "fresh", tuple(classes), len(classes)
    exp.data_dir, exp.output_dir, exp.exp_name = str(root / "data"), str(root / "runs"), "transfer"
    common = {
        "input_size": (128, 128),
        "test_size": (128, 128),
        "multiscale": False,
        "mosaic_scale": (0.5, 1.5),
        "enable_mixup": False,
        "mosaic_prob": 0.5,
        "tracker": "none",
        "seed": 0,
        "data_num_workers": 0,
        "early_stop_patience": 0,
        "ckpt_interval": 0,
        "batch_size": BATCH,
        "no_aug_epochs": 2,
        "basic_lr_per_img": LR_PER_IMAGE,
        "scratch_basic_lr_per_img": LR_PER_IMAGE,
        "warmup_epochs": 1,
        "scratch_warmup_epochs": 1,
        "pretrained": None,
    }
    for key, value in (common | settings).items():
        setattr(exp, key, value)
    exp.eval_interval = exp.max_epoch  # validate once, at the end
    return exp


def final_metrics(out):
    return json.loads((out / "history.json").read_text())[-1]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Every run of this module on one torch thread. The thread count changes the order of float
    sums, and a 96-iteration run follows it: the keep-mode run gave the new class 0.31 AP50 on one
    thread and 0.07 on two. The figures above were measured on one thread; the same count makes
    them reproducible on any runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """The 'pretrained' model, in YOLOX's release format, trained once for this module."""
    root = tmp_path_factory.mktemp("base")
    exp = make_exp(root, BASE, max_epoch=BASE_EPOCHS, warmup_epochs=2, scratch_warmup_epochs=2)
    make_sample_dataset(exp, (TRAIN_IMAGES * 2, VAL_IMAGES, 0), seed=10)
    out = train(exp, CPU, from_scratch=True, progress=False)
    print(f"\nbase model on {BASE}: val mAP50 {final_metrics(out)['mAP50']:.3f}")
    release = root / "base_release.pth"
    torch.save({"model": load_checkpoint(out / "best.pth")["model"]}, release)
    return release


@pytest.mark.slow
def test_finetuning_beats_training_from_scratch(base_checkpoint, tmp_path):
    results = {}
    for name, ckpt in (("finetuned", base_checkpoint), ("scratch", None)):
        exp = make_exp(tmp_path / name, NEW, max_epoch=FINETUNE_EPOCHS)
        make_sample_dataset(exp, (TRAIN_IMAGES, VAL_IMAGES, 0), seed=20)  # the same images for both
        out = train(exp, CPU, ckpt=ckpt, from_scratch=ckpt is None, progress=False)
        results[name] = final_metrics(out)["mAP50"]
    print(
        f"\nafter {FINETUNE_EPOCHS * TRAIN_IMAGES // BATCH} iterations on {NEW}: val mAP50 finetuned "
        f"{results['finetuned']:.3f}, from scratch {results['scratch']:.3f}"
    )
    assert results["finetuned"] >= results["scratch"] + MIN_GAIN


@pytest.mark.slow
def test_keep_mode_adds_a_class_and_keeps_the_old_ones(base_checkpoint, tmp_path):
    """Old classes plus a new one, the new images labelled with all four (a dataset that gains a
    class): head surgery by name gives the old classes their trained rows."""
    classes = BASE + ("circle",)
    exp = make_exp(tmp_path, classes, max_epoch=FINETUNE_EPOCHS, pretrained_classes=BASE)
    make_sample_dataset(exp, (TRAIN_IMAGES, VAL_IMAGES, 0), seed=30)

    def per_class_ap50(model):
        metrics, _ = evaluate_backend(TorchBackend(model, CPU), exp, "val", CPU, progress=False)
        return {name: metrics["per_class"][name]["AP50"] for name in classes}

    start = exp.get_model()
    load_pretrained(start, exp, load_checkpoint(base_checkpoint), log=lambda _: None)
    before = per_class_ap50(start)
    out = train(exp, CPU, ckpt=base_checkpoint, progress=False)
    after_model = exp.get_model()
    after_model.load_state_dict(load_checkpoint(out / "last.pth")["model"])
    after = per_class_ap50(after_model)
    print(
        "\nkeep mode, val AP50 per class before -> after: "
        + ", ".join(f"{n} {before[n]:.3f} -> {after[n]:.3f}" for n in classes)
    )
    old_before = sum(before[n] for n in BASE) / len(BASE)
    old_after = sum(after[n] for n in BASE) / len(BASE)
    assert old_before >= 0.15  # head surgery carried the old classes: detected from the first step
    assert old_after >= OLD_AP_KEPT * old_before
    assert all(before[n] - after[n] <= OLD_AP_MAX_LOSS for n in BASE)
    assert after["circle"] >= before["circle"] + MIN_GAIN


def test_classes_the_data_never_shows_keep_their_rows(tmp_path, capsys):
    """keep_coco style with images of the new class only: the old classes' class rows come from
    the checkpoint and stay exactly as they were (freeze_unseen_classes), the new row trains."""
    base = make_exp(tmp_path / "base", BASE)
    torch.manual_seed(0)
    ckpt = tmp_path / "base.pth"
    torch.save({"model": base.get_model().state_dict()}, ckpt)  # release format: no class names
    exp = make_exp(
        tmp_path,
        BASE + ("circle",),
        max_epoch=1,
        pretrained_classes=BASE,
        input_size=(64, 64),
        test_size=(64, 64),
    )
    make_sample_dataset(exp, (8, 2, 0), seed=5, draw=("circle",))
    out = train(exp, CPU, ckpt=ckpt, batch_size=4, progress=False, max_iters_per_epoch=2)
    assert "classes: 3 taken from the checkpoint never appear in the training data" in capsys.readouterr().out
    start, final = load_checkpoint(ckpt)["model"], load_checkpoint(out / "last.pth")
    for k in range(3):
        for part in ("weight", "bias"):
            name = f"head.cls_preds.{k}.{part}"
            assert torch.equal(final["model"][name][:3], start[name]), name
            assert torch.equal(final["train_model"][name][:3], start[name]), name
    assert not torch.equal(
        final["train_model"]["head.cls_preds.0.bias"][3], exp.get_model().head.cls_preds[0].bias[3]
    )
