"""Train a YOLOX model from the project's Exp, on whatever device is there.

    invoke train                       # finetune the official COCO weights (downloaded once)
    invoke train --from-scratch        # random weights, from-scratch learning rate and warmup
    invoke train --device cpu --smoke  # a few iterations at a tiny size: does everything run?
    invoke train --ckpt my.pth         # start from other weights (classes matched by name)
    invoke train --strategy head       # only the head trains (little data)
    invoke train --name big-lr         # runs/<exp>/big-lr instead of the next train, train2, ...
    invoke train --resume              # continue the latest run's last.pth exactly (or --name's)
    invoke train --devices 4           # 4 GPUs (or CPU processes) via torchrun / DDP

The learning rate follows the linear scaling rule: lr = exp.basic_lr_per_img * batch size *
accumulate, warmed up, then cosine-decayed (or stepped); see yft.train.optim.
"""

import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from yft import runs
from yft.data.loaders import build_train_loader
from yft.data.precheck import check_split
from yft.device import describe
from yft.evaluate.run import evaluate_backend
from yft.inference import TorchBackend
from yft.io import clean_stale_temps
from yft.project import UserError, relative
from yft.train import distributed, hooks
from yft.train.checkpoint import check_class_names, load_checkpoint, load_weights
from yft.train.fast_loss import install_fast_loss
from yft.train.loss_shaping import install_loss_shaping
from yft.train.optim import LRSchedule, build_optimizer, set_lr
from yft.train.trainer import Trainer
from yft.train.transfer import STRATEGIES, load_pretrained
from yft.train.weights import Start, backup_weights, sha256_of, starting_weights

# A smoke run proves the whole pipeline runs, not that it learns: tiny inputs, few steps.
SMOKE_SETTINGS = {
    "input_size": (128, 128),
    "test_size": (128, 128),
    "max_epoch": 2,
    "warmup_epochs": 1,
    "no_aug_epochs": 1,
    "multiscale": False,
    "data_num_workers": 0,
    "early_stop_patience": 0,
}
SMOKE_ITERS_PER_EPOCH = 3


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def log(message):
    if distributed.is_main():
        tqdm.write(message)


def train(
    exp,
    device,
    ckpt=None,
    resume=False,
    smoke=False,
    batch_size=None,
    amp=None,
    out_dir=None,
    progress=None,
    strategy=None,
    max_iters_per_epoch=None,
    extra_hooks=(),
    name=None,
    from_scratch=False,
):
    """Train and return the run folder (last.pth, best.pth, logs, curves).

    The folder: out_dir if given; with resume, the latest run (or the one called `name`); else a
    new one (yft.runs.new_run: train, train2, ... or `name`), created once the data and the
    starting weights are checked.

    Weights: --ckpt, else random with from_scratch, else the Exp's `pretrained` (see
    yft.train.weights.starting_weights); with none, the from-scratch hyperparameters apply.
    progress: True/False forces progress bars on/off (default: only on a terminal).
    max_iters_per_epoch: cap the batches per epoch (smoke runs and tests).
    extra_hooks: more hooks, run after the built-in ones.
    """
    if strategy:
        exp.strategy = strategy
    if exp.strategy not in STRATEGIES:
        raise UserError(f"strategy {exp.strategy!r}: use one of {', '.join(STRATEGIES)}")
    if ckpt and resume:
        raise UserError("--ckpt and --resume exclude each other: --resume continues the run's own last.pth")
    device = distributed.init(device)
    world, rank = distributed.world_size(), distributed.rank()
    batch_size = int(batch_size or exp.batch_size)
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: it must be at least 1")
    if batch_size % world:
        raise UserError(f"batch size {batch_size} does not split evenly over {world} processes")
    if name:
        runs.check_name(name)
    amp_dtype = {None: None, "fp16": torch.float16, "bf16": torch.bfloat16}.get(amp, "bad")
    if amp_dtype == "bad":
        raise UserError(f"--amp {amp}: use fp16 or bf16")
    if amp_dtype is torch.float16 and device.type != "cuda":
        raise UserError("--amp fp16 needs a CUDA GPU; use --amp bf16 or no --amp on this device")
    if out_dir is None and resume is True:
        out_dir = runs.resolve_run(exp, name, smoke=smoke)
    elif out_dir is None and resume:
        out_dir = Path(resume).parent

    check_split(exp, "train")  # a data problem shows before any download
    check_split(exp, "val")

    # Where the weights come from, checked before anything is written.
    state = None
    if resume:
        resume_path = Path(out_dir) / "last.pth" if resume is True else Path(resume)
        if resume is True and not resume_path.is_file():
            raise UserError(
                f"{relative(resume_path)}: nothing to resume (the run stopped before its first "
                "checkpoint, or is still running); start a new run without --resume"
            )
        state = load_checkpoint(resume_path)
        check_class_names(state, exp, resume_path, "--resume")
        start = Start(resume_path, "--resume")
        profile = state.get("profile", "finetune")
    else:
        start = starting_weights(exp, ckpt, from_scratch, smoke, progress=distributed.is_main())
        profile = start.profile
    if profile == "scratch":
        exp.basic_lr_per_img, exp.warmup_epochs = exp.scratch_basic_lr_per_img, exp.scratch_warmup_epochs
    if smoke:
        for key, value in SMOKE_SETTINGS.items():
            setattr(exp, key, value)
        max_iters_per_epoch = max_iters_per_epoch or SMOKE_ITERS_PER_EPOCH

    seed = exp.seed if exp.seed is not None else random.randrange(2**31)
    seed = int(distributed.broadcast_float(seed, device))  # every rank draws the same stream
    if exp.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        exp.data_num_workers = 0
    seed_everything(seed + rank)  # the fresh layers' initial weights too
    model = exp.get_model()
    if exp.fast_loss:  # batched SimOTA: same assignments and losses, far fewer host syncs
        install_fast_loss(model)
    notes = []
    if state is not None:
        report = load_weights(model, {"model": state["train_model"]})
        if report.skipped or report.missing:
            raise UserError(
                f"{resume_path}: does not fit the Exp's model ({report.summary().splitlines()[0]}); "
                "was it trained with another model or class count?"
            )
    elif start.path:
        report = load_pretrained(model, exp, load_checkpoint(start.path), notes.append)
        if not report.loaded:
            raise UserError(
                f"{start.path}: no tensor matched the model (is it a {exp.model_name} checkpoint?)"
            )

    # The first lines of every run: device, where the weights came from, which profile.
    log(
        f"device {describe(device)} x {world}, batch {batch_size} (x{exp.accumulate} accumulated), "
        f"{exp.max_epoch} epochs, input {exp.input_size[0]}x{exp.input_size[1]}, "
        f"strategy {exp.strategy}, seed {seed}"
    )
    if start.path:
        log(
            f"weights: {relative(start.path)} ({start.source}, sha256 {sha256_of(start.path)[:12]}): "
            f"{report.summary()}"
        )
    else:
        log(f"weights: none, {start.source}")
    for note in notes:
        log(note)
    lr = exp.basic_lr_per_img * batch_size * max(1, exp.accumulate)
    log(
        f"hyperparameters: {profile} profile, lr {lr:.3g} (basic_lr_per_img {exp.basic_lr_per_img:.3g} "
        f"x batch {batch_size * max(1, exp.accumulate)}), warmup {exp.warmup_epochs} epochs"
        + (
            " (from-scratch values: scratch_basic_lr_per_img, scratch_warmup_epochs)"
            if profile == "scratch"
            else ""
        )
    )

    if resume is True and not smoke and distributed.is_main():
        runs.set_latest(exp, out_dir)
    if out_dir is None:  # only now: a run that cannot start leaves no empty folder behind
        out_dir = distributed.broadcast_object(
            runs.new_run(exp, name, smoke) if distributed.is_main() else None
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():  # what a killed run was writing (half a checkpoint) goes now
        for path in clean_stale_temps(out_dir):
            log(f"removed {relative(path)}, a temporary file left by a killed run")
        record_run(
            exp,
            out_dir,
            start=start,
            profile=profile,
            resume=resume,
            smoke=smoke,
            device=device,
            world=world,
            batch_size=batch_size,
            amp=amp,
            seed=seed,
        )
    if state is not None:
        log(f"resuming {relative(resume_path)} at epoch {state['epoch'] + 1}")
    elif start.path and distributed.is_main():
        log(f"kept a copy of the starting weights: {relative(backup_weights(start.path, out_dir))}")

    log("loading data")
    skip = state["iteration"] if state else 0
    loader = build_train_loader(
        exp, batch_size // world, device, seed=seed, rank=rank, world_size=world, skip_batches=skip
    )
    iters_per_epoch = min(len(loader), max_iters_per_epoch or len(loader))
    unseen = []
    if exp.freeze_unseen_classes and state is None and start.path and report.kept_rows:
        from yft.train.sampling import dataset_class_lists

        seen = {int(c) for classes in dataset_class_lists(loader.dataset._dataset) for c in classes}
        unseen = [row for row in report.kept_rows if row not in seen]
    elif state is not None:
        unseen = list(state.get("frozen_class_rows", []))
    if unseen:
        log(
            f"classes: {len(unseen)} taken from the checkpoint never appear in the training data; their "
            f"class weights stay frozen and out of the class loss ({', '.join(exp.class_names[r] for r in unseen[:5])}"
            f"{' ...' if len(unseen) > 5 else ''}; freeze_unseen_classes)"
        )
    if install_loss_shaping(model, exp, unseen):
        log(
            f"loss shaping: label smoothing {exp.label_smoothing}, focal gamma {exp.focal_gamma}"
            + (f", {len(unseen)} classes left out of the class loss" if unseen else "")
        )
    model.to(device)
    if exp.channels_last:
        model.to(memory_format=torch.channels_last)
    distributed.broadcast_model(model)

    optimizer = build_optimizer(model, exp, device)
    schedule = LRSchedule(exp, exp.basic_lr_per_img * batch_size * max(1, exp.accumulate), iters_per_epoch)
    ema = None
    if exp.ema:
        from yolox.utils import ModelEMA

        ema = ModelEMA(model, exp.ema_decay)
    if exp.compile:
        # Compile the forward of backbone + neck in place (after the EMA copied the model, so the
        # EMA keeps the plain forward); module names and checkpoints stay unchanged.
        model.backbone.forward = torch.compile(model.backbone.forward)
    trainer = Trainer(
        exp, model, optimizer, schedule, loader, device, iters_per_epoch, ema=ema, amp_dtype=amp_dtype
    )
    trainer.profile = profile  # stored in checkpoints: a resume keeps the run's hyperparameters
    trainer.frozen_class_rows = unseen  # likewise

    def validate(eval_model):
        metrics, _ = evaluate_backend(
            TorchBackend(eval_model, device),
            exp,
            "val",
            device,
            batch_size=max(1, batch_size // world),
            progress=False,
            sharded=True,
        )
        return metrics

    main = distributed.is_main()
    trainer.register_hooks(
        [
            hooks.Freezer(),
            hooks.KeepClassRows(unseen) if unseen else None,
            hooks.NoAugTail(),
            hooks.Multiscale(seed) if exp.multiscale else None,
            hooks.Evaluator(validate, out_dir),  # every rank validates its share of the images
            hooks.EarlyStopping(exp.early_stop_patience) if exp.early_stop_patience else None,
            hooks.PlateauLR(exp.plateau_patience, exp.plateau_factor) if exp.plateau_patience else None,
            hooks.MetricsLog(out_dir) if main else None,
            # After validation, the hooks that react to it and the log rows: a checkpoint holds them all.
            hooks.Checkpointer(out_dir),  # every rank (each rank's RNG state); rank 0 writes
            hooks.Tracker(exp.tracker, out_dir) if main and exp.tracker != "none" else None,
            hooks.CurvePlot(out_dir) if main else None,
            hooks.Progress(progress) if main else None,
            *extra_hooks,
        ]
    )
    if state is not None:
        restore_state(trainer, state)
    trainer.lr = schedule(trainer.iter)
    set_lr(optimizer, trainer.lr)

    log(f"training: {iters_per_epoch} iterations per epoch, output in {relative(out_dir)}")
    started = time.perf_counter()
    try:
        trainer.train()
        if world > 1:  # a cheap guard against silent divergence between ranks
            disagreement = distributed.weights_disagreement(model, device)
            distributed.barrier()  # no rank tears the process group down while another still uses it
            if disagreement != 0:
                raise UserError(
                    f"DDP check failed: the {world} processes ended with different weights "
                    f"(max difference {disagreement:.3g}); last.pth holds rank 0's. This is a "
                    "bug or a hardware fault, not your data: please report it"
                )
            log(f"DDP check: {world} ranks agree on the weights (max difference 0)")
    except FloatingPointError as err:  # the trainer's own divergence message, as one line
        raise UserError(str(err)) from None
    except torch.OutOfMemoryError:
        raise UserError(
            f"out of memory at batch size {batch_size}: try --batch-size {max(1, batch_size // 2)} "
            f"--set accumulate={2 * max(1, exp.accumulate)} (same effective batch), or --amp"
        ) from None
    finally:
        distributed.shutdown()
    if not main:  # after shutdown every process would count as rank 0
        return out_dir
    minutes = (time.perf_counter() - started) / 60
    best = "n/a" if trainer.metrics is None and not trainer.best_ap else f"{100 * trainer.best_ap:.2f}"
    log(
        f"done in {minutes:.1f} min; best val mAP50:95 {best}; "
        f"checkpoints {relative(out_dir / 'best.pth')}, {relative(out_dir / 'last.pth')}"
    )
    return out_dir


def record_run(exp, out_dir, start, profile, resume, smoke, device, world, batch_size, amp, seed):
    """run.json: what this run was started with (the HTML report shows it). A resume keeps the
    first record and notes when it resumed."""
    from datetime import datetime, timezone

    from yft.data.coco_io import read_json
    from yft.io import write_json

    path = out_dir / "run.json"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if resume and path.is_file():
        record = read_json(path)
        record.setdefault("resumed", []).append(now)
    else:
        record = {
            "started": now,
            "exp_file": relative(getattr(exp, "exp_file", "") or "?"),
            "weights": relative(start.path) if start.path else None,
            "weights_source": start.source,
            "profile": profile,
            "smoke": bool(smoke),
            "device": str(device),
            "processes": world,
            "batch_size": batch_size,
            "amp": amp,
            "seed": seed,
            "settings": exp.non_default_settings(),
        }
    write_json(path, record, indent=1)


def restore_state(trainer, state):
    """Everything an exact resume needs, from a Checkpointer state."""
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scaler.load_state_dict(state["scaler"])
    if trainer.ema is not None:
        load_weights(trainer.ema.ema, state)
        trainer.ema.updates = state["ema_updates"]
    trainer.start_epoch, trainer.iter, trainer.best_ap = state["epoch"], state["iteration"], state["best_ap"]
    trainer.schedule.scale = state.get("lr_scale", 1.0)
    for hook in trainer.hooks:
        saved = state.get("hooks", {}).get(type(hook).__name__)
        if saved is not None and hasattr(hook, "load_state_dict"):
            hook.load_state_dict(saved)
    # Each rank's own random streams (python, numpy, torch, its GPU's) when the run had as many
    # processes as now; after a change of process count they start afresh from the seed.
    world, rank = distributed.world_size(), distributed.rank()
    per_rank = state.get("rng_per_rank") or [state["rng"]]
    if len(per_rank) == world:
        hooks.restore_rng_states(per_rank[rank], trainer.device)
    else:
        log(
            f"resume: the checkpoint was written by {len(per_rank)} process(es), this run has {world}: "
            "random streams (augmentation draws) start afresh and the images are dealt to the "
            "processes differently; weights, optimiser, EMA, schedule and hooks are restored"
        )
