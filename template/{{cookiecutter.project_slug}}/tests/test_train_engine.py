"""The training engine on CPU: strategies, head surgery, exact resume, schedules, sampling,
copy-paste, extras, the pre-training checklist."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_models import tiny

from yft.exp import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
from yft.project import UserError
from yft.train.checkpoint import load_checkpoint
from yft.train.hooks import HookBase
from yft.train.optim import LRSchedule, part_of
from yft.train.run import train
from yft.train.sampling import TrainSampler, repeat_factors
from yft.train.transfer import load_pretrained

CPU = torch.device("cpu")


def weights(path, key="train_model"):
    return load_checkpoint(path)[key]


@pytest.mark.slow
def test_head_strategy_trains_only_the_head(sample_exp, tmp_path):
    exp = tiny(sample_exp, strategy="head", ema=False)
    start = exp.get_model().state_dict()
    torch.save({"model": start}, tmp_path / "start.pth")
    out = train(exp, CPU, ckpt=tmp_path / "start.pth", batch_size=4, progress=False, max_iters_per_epoch=2)
    end = weights(out / "last.pth")
    for name, tensor in end.items():
        if name.startswith("backbone."):  # weights and BatchNorm statistics frozen
            assert torch.equal(tensor, start[name]), name
    assert not torch.equal(end["head.cls_preds.0.weight"], start["head.cls_preds.0.weight"])
    assert (out / "pretrained_start.pth").is_file()  # the starting weights are kept


@pytest.mark.slow
def test_progressive_unfreezes_on_schedule(sample_exp):
    exp = tiny(
        sample_exp,
        max_epoch=2,
        progressive_schedule=(
            ("neck", 1),
            ("dark5", 5),
            ("dark4", 5),
            ("dark3", 5),
            ("dark2", 5),
            ("stem", 5),
        ),
    )
    seen = []

    class Spy(HookBase):
        def after_epoch(self):
            model = self.trainer.model
            seen.append(
                (
                    next(model.backbone.C3_p4.parameters()).requires_grad,
                    next(model.backbone.backbone.dark5.parameters()).requires_grad,
                )
            )

    train(
        exp,
        CPU,
        batch_size=4,
        strategy="progressive",
        progress=False,
        max_iters_per_epoch=1,
        extra_hooks=[Spy()],
    )
    assert seen == [(False, False), (True, False)]


def test_keep_coco_head_surgery_keeps_the_80_rows(exp):
    exp.class_mode = "keep_coco"
    exp.class_names = COCO_CLASS_NAMES + ("drone", "kite board")
    exp.num_classes = 82
    coco = tiny(exp)
    coco_model = type(exp)()
    coco_model.set_architecture(exp.model_name)
    coco_model.num_classes = 80
    state = {"model": coco_model.get_model().state_dict()}
    model = exp.get_model()
    fresh_rows = model.head.cls_preds[0].weight[80:].clone()
    report = load_pretrained(model, coco, state, log=lambda _: None)
    for k in range(3):
        ours, theirs = model.head.cls_preds[k], state["model"]
        assert torch.equal(ours.weight[:80], theirs[f"head.cls_preds.{k}.weight"])
        assert torch.equal(ours.bias[:80], theirs[f"head.cls_preds.{k}.bias"])
    assert torch.equal(model.head.cls_preds[0].weight[80:], fresh_rows)
    assert not report.skipped and not report.missing
    assert exp.category_ids()[:80] == list(COCO_CATEGORY_IDS) and exp.category_ids()[80:] == [91, 92]


def test_replace_mode_renames_coco_slots(exp):
    exp.replace_coco_classes({"truck": "forklift"})
    assert exp.num_classes == 80 and exp.class_names[COCO_CLASS_NAMES.index("truck")] == "forklift"
    assert exp.category_ids() == list(COCO_CATEGORY_IDS)


@pytest.mark.slow
def test_resume_continues_exactly(sample_exp, tmp_path):
    # Multiscale on (its RNG must resume too); validation only at the end, to keep this quick.
    settings = {"max_epoch": 3, "deterministic": True, "multiscale": True, "eval_interval": 3}

    straight = train(
        tiny(sample_exp, **settings),
        CPU,
        batch_size=4,
        progress=False,
        max_iters_per_epoch=2,
        out_dir=tmp_path / "straight",
    )

    class Kill(HookBase):
        def after_epoch(self):
            if self.trainer.epoch == 1:
                raise KeyboardInterrupt  # the process dies after epoch 2 was checkpointed

    with pytest.raises(KeyboardInterrupt):
        train(
            tiny(sample_exp, **settings),
            CPU,
            batch_size=4,
            progress=False,
            max_iters_per_epoch=2,
            out_dir=tmp_path / "split",
            extra_hooks=[Kill()],
        )
    assert load_checkpoint(tmp_path / "split" / "last.pth")["epoch"] == 2
    train(
        tiny(sample_exp, **settings),
        CPU,
        batch_size=4,
        progress=False,
        max_iters_per_epoch=2,
        out_dir=tmp_path / "split",
        resume=True,
    )

    a, b = load_checkpoint(straight / "last.pth"), load_checkpoint(tmp_path / "split" / "last.pth")
    for key in ("train_model", "model"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert a["iteration"] == b["iteration"] == 6 and a["ema_updates"] == b["ema_updates"]


def test_extras_run_together(sample_exp):
    """Accumulation, clipping, loss weights, smoothing, focal, copy-paste, repeat factors, RAM cache,
    step schedule and plateau LR in one short run; the JSONL log records what happened."""
    exp = tiny(
        sample_exp,
        accumulate=2,
        grad_clip=1.0,
        cls_loss_weight=2.0,
        label_smoothing=0.1,
        focal_gamma=2.0,
        copy_paste_prob=1.0,
        repeat_threshold=0.5,
        cache="ram",
        scheduler="step",
        lr_step_epochs=(1,),
        plateau_patience=1,
        log_interval=1,
    )
    out = train(exp, CPU, batch_size=4, progress=False, max_iters_per_epoch=2)
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert len(steps) == 4 and all(r["grad_norm"] > 0 for r in steps[1::2])
    assert {"backbone", "neck", "head"} <= {name.split("_")[0] for name in steps[0]["lr"]}
    assert (out / "training_curves.png").stat().st_size > 0 and (out / "epochs.csv").is_file()


def test_nan_loss_stops_with_a_clear_message(sample_exp):
    exp = tiny(sample_exp, iou_loss_weight=float("nan"))
    with pytest.raises(UserError, match="loss became nan at iteration 0"):
        train(exp, CPU, batch_size=4, progress=False, max_iters_per_epoch=1)


def test_a_diverging_run_stops_with_the_trainers_message(sample_exp):
    """--set basic_lr_per_img=1e9 used to crash inside YOLOX's loss (BCE input outside 0..1)."""
    # Random weights (the fixture's pretrained=None): the from-scratch profile's values apply.
    exp = tiny(
        sample_exp,
        scratch_basic_lr_per_img=1e9,
        scratch_warmup_epochs=0,
        no_aug_epochs=0,
        max_epoch=1,
        eval_interval=100,
    )
    with pytest.raises(UserError, match="became (nan|inf|-inf|non-finite)"):
        train(exp, CPU, batch_size=4, progress=False, max_iters_per_epoch=6)


def test_lr_schedule(exp):
    tiny(exp, max_epoch=10, warmup_iters=5, warmup_lr=0.0, no_aug_epochs=2, min_lr_ratio=0.1)
    schedule = LRSchedule(exp, 1.0, iters_per_epoch=10)
    assert schedule(0) == 0.0 and schedule(5) == pytest.approx(1.0)
    assert schedule(80) == pytest.approx(0.1) and schedule(99) == pytest.approx(0.1)
    assert 0.1 < schedule(40) < 1.0
    exp.scheduler, exp.lr_step_epochs, exp.lr_step_gamma = "step", (4, 8), 0.5
    assert [schedule(i) for i in (10, 40, 85)] == pytest.approx([1.0, 0.5, 0.25])
    schedule.scale = 0.5
    assert schedule(10) == pytest.approx(0.5)


def test_parts_of_the_network():
    assert part_of("backbone.backbone.dark3.0.conv.weight") == "backbone"
    assert part_of("backbone.C3_p4.conv1.conv.weight") == "neck"
    assert part_of("head.cls_preds.0.bias") == "head"


def test_sampler_resumes_and_oversamples_rare_classes():
    stream = list(zip(range(40), TrainSampler(10, seed=5)))
    resumed = list(zip(range(30), TrainSampler(10, seed=5, skip=10)))
    assert [i for _, i in stream[10:]] == [i for _, i in resumed]
    classes = [np.array([0])] * 9 + [np.array([1])]
    factors = repeat_factors(classes, threshold=0.5)
    assert factors[:9] == [1.0] * 9 and factors[9] == pytest.approx(np.sqrt(5))
    draws = [i for _, i in zip(range(2000), TrainSampler(10, seed=1, factors=factors))]
    assert draws.count(9) / draws.count(0) == pytest.approx(np.sqrt(5), rel=0.15)
    ranks = [list(zip(range(5), TrainSampler(10, seed=2, rank=r, world_size=2))) for r in (0, 1)]
    # within one pass the two ranks split the images between them
    assert sorted(i for r in ranks for _, i in r) == list(range(10))


def test_copy_paste_adds_objects_in_free_space(sample_exp):
    from yft.data.copy_paste import TrainSource
    from yft.data.loaders import coco_dataset

    base = coco_dataset(sample_exp, "train", (128, 128), None)
    source = TrainSource(base, copy_paste_prob=1.0, copy_paste_max_area=0.5)
    grew = 0
    for index in range(len(source)):
        img, res, _, _ = source.pull_item(index)
        original = base.annotations[index][0]
        grew += len(res) > len(original)
        # The image's own boxes are untouched (YOLOX scales them with the resize ratio, so they may
        # pass the truncated resized edge by a fraction of a pixel); pasted ones lie inside it.
        assert np.array_equal(res[: len(original)], original)
        pasted = res[len(original) :]
        assert (
            (pasted[:, :4] >= 0).all()
            and (pasted[:, 2] <= img.shape[1]).all()
            and (pasted[:, 3] <= img.shape[0]).all()
        )
    assert grew > 0


def test_checklist_passes_on_good_data_and_fails_on_bad(sample_exp, capsys):
    from yft.data.coco_io import annotation_path
    from yft.train.check import run_checks

    assert run_checks(tiny(sample_exp), CPU, batch_size=4)
    out = capsys.readouterr().out
    assert "[ok] train split" in out and "train_batch.png" in out
    path = annotation_path(sample_exp, "val")
    coco = json.loads(path.read_text())
    coco["categories"][0]["name"] = "not ours"
    path.write_text(json.dumps(coco))
    assert not run_checks(sample_exp, CPU, batch_size=4)
    assert "category names differ" in capsys.readouterr().out


@pytest.mark.slow
def test_replace_mode_smoke_trains_on_renamed_slots(exp):
    from yft.data.sample import make_sample_dataset

    exp.replace_coco_classes({"truck": "forklift", "kite": "drone"})
    make_sample_dataset(exp, counts=(8, 4, 2), seed=2)
    coco = json.loads((Path(exp.data_dir) / "annotations" / "instances_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert {names[a["category_id"]] for a in coco["annotations"]} <= {"forklift", "drone"}
    out = train(tiny(exp), CPU, batch_size=4, progress=False, max_iters_per_epoch=1)
    assert load_checkpoint(out / "last.pth")["class_names"][COCO_CLASS_NAMES.index("truck")] == "forklift"
