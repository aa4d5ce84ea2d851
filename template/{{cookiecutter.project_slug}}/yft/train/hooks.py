"""Training hooks: each does one job, can be left out, and keeps its own state for resume."""

import csv
import json
import math
import random
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from yft.io import copy_atomic, write_figure, write_json
from yft.project import UserError, relative
from yft.train import distributed
from yft.train.checkpoint import save_checkpoint
from yft.train.trainer import HookBase
from yft.train.transfer import apply_freeze, describe_trainable, frozen_units

LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss")


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


class NoAugTail(HookBase):
    """The last `no_aug_epochs` epochs: no mosaic/mixup and the extra L1 box loss (YOLOX's recipe)."""

    def before_epoch(self):
        t = self.trainer
        if t.epoch >= t.max_epoch - t.exp.no_aug_epochs and not t.model.head.use_l1:
            t.loader.close_mosaic()
            t.model.head.use_l1 = True
            if distributed.is_main():
                tqdm.write(f"epoch {t.epoch + 1}: mosaic and mixup off, L1 loss on")


class Freezer(HookBase):
    """Applies the transfer strategy: what is frozen at each epoch, logged when it changes."""

    def before_epoch(self):
        t = self.trainer
        units = frozen_units(t.exp, t.epoch)
        if units != t.frozen_units or t.epoch == t.start_epoch:
            t.set_frozen(units, apply_freeze(t.model, units, class_preds=t.exp.strategy == "classes"))
            if distributed.is_main():
                tqdm.write(f"epoch {t.epoch + 1}: {describe_trainable(t.model, units)}")


class KeepClassRows(HookBase):
    """Keeps the class-prediction rows of `rows` (our class indices) at their starting values:
    classes taken from the checkpoint that the training data never shows. Trained, they could
    only learn "not this class" at every anchor and be forgotten. Restored after each step (in
    the EMA too), which also undoes weight decay and momentum on them."""

    def __init__(self, rows):
        self.rows, self.saved = list(rows), None

    def before_train(self):
        preds = self.trainer.model.head.cls_preds
        self.saved = [(conv.weight[self.rows].clone(), conv.bias[self.rows].clone()) for conv in preds]

    @torch.no_grad()
    def after_step(self):
        t = self.trainer
        for model in (t.model, t.ema.ema if t.ema is not None else None):
            if model is None:
                continue
            for conv, (weight, bias) in zip(model.head.cls_preds, self.saved):
                conv.weight[self.rows] = weight
                conv.bias[self.rows] = bias


class Multiscale(HookBase):
    """Every 10 iterations pick a new input size around exp.input_size (same on every rank:
    each rank draws from an identically seeded generator)."""

    def __init__(self, seed, every=10):
        self.rng, self.every = random.Random(seed), every

    def after_step(self):
        t = self.trainer
        if (t.iter + 1) % self.every or t.model.head.use_l1:  # fixed size in the no-aug tail
            return
        height, width = t.exp.input_size
        base = height // 32
        spread = min(t.exp.multiscale_range, max(1, base // 4))
        size = self.rng.randint(max(1, base - spread), base + spread)
        t.input_size = (32 * size, 32 * max(1, round(size * width / height)))

    def after_epoch(self):
        self.trainer.input_size = tuple(self.trainer.exp.input_size)

    def state_dict(self):
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state):
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


class Progress(HookBase):
    """A progress bar per epoch (loss parts, LR, images/s, data time, ETA of the whole run) and a
    summary line per epoch. Bars only on a terminal; logs get the summary lines."""

    def __init__(self, bars=None):
        self.bars = sys.stderr.isatty() if bars is None else bars

    def before_train(self):
        self.started, self.done, self.bar = time.perf_counter(), 0, None

    def before_epoch(self):
        t = self.trainer
        self.bar = tqdm(
            total=t.iters_per_epoch,
            desc=f"epoch {t.epoch + 1}/{t.max_epoch}",
            dynamic_ncols=True,
            leave=False,
            disable=not self.bars,
        )

    def eta(self):
        t = self.trainer
        remaining = (t.max_epoch - t.epoch) * t.iters_per_epoch - (t.iter % t.iters_per_epoch) - 1
        return time.strftime(
            "%H:%M:%S", time.gmtime((time.perf_counter() - self.started) / max(1, self.done) * remaining)
        )

    def after_step(self):
        t = self.trainer
        self.done += 1
        # The postfix reads the losses (a device sync): every batch on the CPU, every 10th elsewhere.
        if self.bars and (t.device.type == "cpu" or self.done % 10 == 1):
            parts = {k.replace("_loss", ""): f"{t.losses[k]:.3f}" for k in LOSS_KEYS if k in t.losses}
            self.bar.set_postfix(
                parts
                | {
                    "lr": f"{t.lr:.2e}",
                    "img/s": f"{t.images_per_s:.1f}",
                    "data": f"{t.data_time:.2f}s",
                    "mem": f"{memory_mb(t.device):.0f}MB",
                    "size": t.input_size[0],
                    "eta": self.eta(),
                }
            )
        self.bar.update()

    def after_epoch(self):
        self.bar.close()
        t = self.trainer
        line = (
            f"epoch {t.epoch + 1}/{t.max_epoch}  loss {t.losses.get('total_loss', math.nan):.3f}  "
            f"lr {t.lr:.2e}  {t.images_per_s:.1f} img/s"
        )
        if t.metrics and t.metrics.get("epoch") == t.epoch + 1:
            line += f"  val mAP50:95 {_pct(t.metrics['mAP50_95'])}  mAP50 {_pct(t.metrics['mAP50'])}"
        tqdm.write(line + f"  eta {self.eta()}")

    def after_train(self):
        if self.bar is not None:
            self.bar.close()


def rng_states(device=None):
    """Every random generator this process uses, as plain types torch.load(weights_only=True)
    accepts. On CUDA only this process's own GPU (reading the others would open a context on
    every GPU from every rank)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        states["cuda_device"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states, device=None):
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda_device" in states and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda_device"], device)
    elif "cuda" in states and torch.cuda.is_available():  # checkpoints before cuda_device
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointer(HookBase):
    """last.pth after every epoch; epoch_N.pth every exp.ckpt_interval epochs, keeping the
    newest exp.keep_last; best.pth when the Evaluator found a new best. Each holds everything an
    exact resume needs, as plain types.

    Runs after the Evaluator, the LR/stopping hooks and MetricsLog: a checkpoint includes the
    epoch's validation, their state and its log rows, so a kill before it re-runs the whole epoch
    (MetricsLog cuts the log back to the checkpoint) and a kill after it loses nothing.
    Runs on every rank: each rank's random generators are gathered (rng_per_rank); rank 0 writes.
    """

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def state(self):
        t = self.trainer
        inference = t.ema.ema if t.ema is not None else t.model
        return {
            "model": inference.state_dict(),
            "train_model": t.model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scaler": t.scaler.state_dict(),
            "ema_updates": t.ema.updates if t.ema is not None else 0,
            "epoch": t.epoch + 1,  # the next epoch to run
            "iteration": t.iter,  # batches consumed so far
            "best_ap": float(t.best_ap),
            "lr_scale": float(t.schedule.scale),
            "rng": rng_states(t.device),  # this rank's (rank 0's in the file)
            "rng_per_rank": distributed.gather_objects(rng_states(t.device)),
            "world_size": distributed.world_size(),
            "hooks": {type(h).__name__: h.state_dict() for h in t.hooks if hasattr(h, "state_dict")},
            "class_names": list(t.exp.class_names),
            "profile": getattr(t, "profile", "finetune"),  # finetune or scratch hyperparameters
            "frozen_class_rows": list(getattr(t, "frozen_class_rows", [])),
            "input_size": list(t.exp.input_size),
            "exp_name": t.exp.exp_name,
        }

    def after_epoch(self):
        t = self.trainer
        state = self.state()  # every rank: the gathering is collective
        if not distributed.is_main():
            return
        save_checkpoint(self.out_dir / "last.pth", state)
        epoch = t.epoch + 1
        if (
            getattr(t, "best_epoch", None) == epoch
        ):  # best.pth: a copy of the very checkpoint that scored best
            copy_atomic(self.out_dir / "last.pth", self.out_dir / "best.pth")
        if t.exp.ckpt_interval and epoch % t.exp.ckpt_interval == 0:
            copy_atomic(self.out_dir / "last.pth", self.out_dir / f"epoch_{epoch}.pth")
            kept = sorted(self.out_dir.glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
            for old in kept[: max(0, len(kept) - t.exp.keep_last)]:
                old.unlink()

    def state_dict(self):
        return {"best_epoch": getattr(self.trainer, "best_epoch", None)}

    def load_state_dict(self, state):
        t = self.trainer
        t.best_epoch = state["best_epoch"]
        if t.best_epoch is not None and t.best_epoch == t.start_epoch and distributed.is_main():
            # killed between last.pth and its copy to best.pth: finish that copy now
            copy_atomic(self.out_dir / "last.pth", self.out_dir / "best.pth")


class Evaluator(HookBase):
    """Validate the EMA weights every exp.eval_interval epochs and on the last one; a new best
    sets trainer.best_epoch (the Checkpointer then copies the epoch's checkpoint to best.pth).

    Runs on every rank: under DDP `evaluate` shards the images over the ranks and hands every
    rank the same metrics; rank 0 writes history.json."""

    def __init__(self, evaluate, out_dir):
        self.evaluate, self.out_dir, self.history = evaluate, out_dir, []

    def after_epoch(self):
        t = self.trainer
        epoch = t.epoch + 1
        if epoch % t.exp.eval_interval and epoch != t.max_epoch:
            return
        metrics = self.evaluate(t.ema.ema if t.ema is not None else t.model)
        t.train_mode()
        metrics["epoch"] = epoch
        t.metrics = metrics
        ap = metrics["mAP50_95"] or 0.0
        if ap >= t.best_ap:
            t.best_ap, t.best_epoch = ap, epoch
        self.history.append(
            {k: metrics[k] for k in ("epoch", "mAP50_95", "mAP50", "mAP75")}
            | {"loss": t.losses.get("total_loss"), "lr": t.lr}
        )
        if distributed.is_main():
            write_json(self.out_dir / "history.json", self.history, indent=1)

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state["history"])
        if distributed.is_main():
            write_json(self.out_dir / "history.json", self.history, indent=1)  # drop a re-run epoch's entry


class EarlyStopping(HookBase):
    """Stop when val mAP50:95 has not improved for exp.early_stop_patience evaluated epochs."""

    def __init__(self, patience):
        self.patience, self.best, self.bad = patience, -1.0, 0

    def after_epoch(self):
        t = self.trainer
        if not distributed.is_main() or not t.metrics or t.metrics["epoch"] != t.epoch + 1:
            return
        ap = t.metrics["mAP50_95"] or 0.0
        if ap > self.best:
            self.best, self.bad = ap, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            t.should_stop = True
            tqdm.write(
                f"early stop: val mAP50:95 has not improved for {self.bad} evaluations "
                f"(best {_pct(self.best)})"
            )

    def state_dict(self):
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state):
        self.best, self.bad = state["best"], state["bad"]


class PlateauLR(HookBase):
    """Multiply the LR by exp.plateau_factor when val mAP stalls for exp.plateau_patience epochs."""

    def __init__(self, patience, factor):
        self.patience, self.factor, self.best, self.bad = patience, factor, -1.0, 0

    def after_epoch(self):
        t = self.trainer
        if distributed.is_main() and t.metrics and t.metrics["epoch"] == t.epoch + 1:
            ap = t.metrics["mAP50_95"] or 0.0
            if ap > self.best:
                self.best, self.bad = ap, 0
            else:
                self.bad += 1
                if self.bad >= self.patience:
                    t.schedule.scale *= self.factor
                    self.bad = 0
                    tqdm.write(f"val mAP plateaued: LR scale now {t.schedule.scale:g}")
        t.schedule.scale = distributed.broadcast_float(t.schedule.scale, t.device)

    def state_dict(self):
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state):
        self.best, self.bad = state["best"], state["bad"]


def memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class MetricsLog(HookBase):
    """Always-on logs beside the checkpoints: train_log.jsonl (every exp.log_interval batches and
    every epoch: losses, LR per group, gradient norm, images/s, data time, memory) and
    epochs.csv (one row per epoch), whatever tracker is chosen."""

    FIELDS = (
        "epoch",
        "iteration",
        "loss",
        "iou_loss",
        "conf_loss",
        "cls_loss",
        "l1_loss",
        "lr",
        "grad_norm",
        "images_per_s",
        "mAP50_95",
        "mAP50",
        "mAP75",
    )

    LOGS = ("train_log.jsonl", "epochs.csv")

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def state_dict(self):
        """How long each log was when the checkpoint was taken (it runs after the rows are written)."""
        return {
            name: (self.out_dir / name).stat().st_size if (self.out_dir / name).is_file() else 0
            for name in self.LOGS
        }

    def load_state_dict(self, state):
        """Cut each log back to the checkpoint: the rows of the epoch a kill interrupted are written
        again when it re-runs, never twice."""
        for name in self.LOGS:
            path, size = self.out_dir / name, state.get(name)
            if size is not None and path.is_file() and path.stat().st_size > size:
                with open(path, "r+b") as f:
                    f.truncate(size)

    def _write(self, record):
        with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def after_step(self):
        t = self.trainer
        if (t.iter + 1) % t.exp.log_interval:
            return
        losses = t.losses  # reading them also turns grad_norm into a float
        self._write(
            {
                "type": "step",
                "epoch": t.epoch + 1,
                "iteration": t.iter + 1,
                **losses,
                "lr": {g.get("name", str(i)): g["lr"] for i, g in enumerate(t.optimizer.param_groups)},
                "grad_norm": t.grad_norm,
                "images_per_s": round(t.images_per_s, 2),
                "data_time": round(t.data_time, 4),
                "step_time": round(t.step_time, 4),
                "memory_mb": round(memory_mb(t.device), 1),
                "input_size": t.input_size[0],
            }
        )

    def after_epoch(self):
        t = self.trainer
        metrics = t.metrics if t.metrics and t.metrics.get("epoch") == t.epoch + 1 else {}
        t.losses  # noqa: B018 (materialise the last batch's losses and gradient norm)
        row = {
            "epoch": t.epoch + 1,
            "iteration": t.iter,
            "loss": t.losses.get("total_loss"),
            **{k: t.losses.get(k) for k in LOSS_KEYS[1:]},
            "lr": t.lr,
            "grad_norm": t.grad_norm,
            "images_per_s": round(t.images_per_s, 2),
            **{k: metrics.get(k) for k in ("mAP50_95", "mAP50", "mAP75")},
        }
        self._write({"type": "epoch", **row})
        path = self.out_dir / "epochs.csv"
        new = not path.is_file()
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)


class CurvePlot(HookBase):
    """training_curves.png at the end: loss parts per iteration, val mAP and LR per epoch."""

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_train(self):
        path = self.out_dir / "train_log.jsonl"
        if not path.is_file():
            return
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        try:
            plot_curves(records, self.out_dir / "training_curves.png")
        except ImportError:
            tqdm.write("matplotlib is not installed: no training_curves.png (pip install matplotlib)")


def plot_curves(records, target):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in LOSS_KEYS:
        xs = [r["iteration"] for r in steps if key in r]
        if xs:
            axes[0].plot(xs, [r[key] for r in steps if key in r], label=key.replace("_loss", ""))
    axes[0].set(title="training loss", xlabel="iteration")
    for key in ("mAP50_95", "mAP50"):
        pts = [(r["epoch"], r[key]) for r in epochs if r.get(key) is not None]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=key)
    axes[1].set(title="validation", xlabel="epoch")
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    axes[2].plot([r["epoch"] for r in epochs], [r["lr"] for r in epochs])
    axes[2].set(title="learning rate", xlabel="epoch")
    fig.tight_layout()
    write_figure(target, fig)


class Tracker(HookBase):
    """Send losses, LR and validation metrics to tensorboard, mlflow or wandb."""

    INSTALL = {
        "tensorboard": "pip install tensorboard",
        "mlflow": "pip install -e '.[mlflow]'",
        "wandb": "pip install -e '.[wandb]'",
    }

    def __init__(self, kind, out_dir):
        self.kind, self.out_dir, self.active = kind, out_dir, False

    def before_train(self):
        t = self.trainer
        config = {k: v for k, v in vars(t.exp).items() if isinstance(v, (int, float, str, bool, tuple))}
        try:
            if self.kind == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
                self.writer.add_text("exp", json.dumps(config, default=str, indent=1))
            elif self.kind == "mlflow":
                import mlflow

                mlflow.set_tracking_uri(f"file:{self.out_dir.parent / 'mlruns'}")
                mlflow.set_experiment(t.exp.exp_name)
                mlflow.start_run()
                mlflow.log_params({k: str(v)[:250] for k, v in config.items()})
            elif self.kind == "wandb":
                import wandb

                wandb.init(project=t.exp.exp_name, dir=str(self.out_dir), config=config)
            else:
                raise UserError(f"tracker {self.kind!r}: use tensorboard, mlflow, wandb or none")
        except ImportError:
            raise UserError(
                f"tracker {self.kind!r} is not installed: {self.INSTALL[self.kind]} "
                '(or set tracker = "none" in the Exp)'
            ) from None
        self.active = True
        tqdm.write(f"tracking with {self.kind} in {relative(self.out_dir)}")

    def _log(self, values, step):
        if self.kind == "tensorboard":
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        elif self.kind == "mlflow":
            import mlflow

            mlflow.log_metrics(values, step=step)
        elif self.kind == "wandb":
            import wandb

            wandb.log(values, step=step)

    def after_step(self):
        t = self.trainer
        if (t.iter + 1) % t.exp.log_interval == 0:
            values = {f"train/{k}": v for k, v in t.losses.items()}
            values |= {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(t.optimizer.param_groups)}
            values |= {
                "train/grad_norm": t.grad_norm,
                "speed/images_per_s": t.images_per_s,
                "speed/data_time": t.data_time,
            }
            self._log(values, t.iter + 1)

    def after_epoch(self):
        t = self.trainer
        if t.metrics and t.metrics.get("epoch") == t.epoch + 1:
            self._log(
                {
                    f"val/{k}": t.metrics[k]
                    for k in ("mAP50_95", "mAP50", "mAP75")
                    if t.metrics[k] is not None
                },
                t.iter,
            )

    def after_train(self):
        if not self.active:
            return
        if self.kind == "tensorboard":
            self.writer.close()
        elif self.kind == "mlflow":
            import mlflow

            mlflow.end_run()
        elif self.kind == "wandb":
            import wandb

            wandb.finish()
