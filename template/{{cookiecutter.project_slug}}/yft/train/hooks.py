"""Training hooks: each does one job and can be left out."""

import json
import math
import random
import shutil
import time

from tqdm import tqdm

from yft.data.coco_io import write_json
from yft.project import UserError, relative
from yft.train.checkpoint import save_checkpoint
from yft.train.trainer import HookBase

LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss")


class NoAugTail(HookBase):
    """The last `no_aug_epochs` epochs: no mosaic/mixup and the extra L1 box loss (YOLOX's recipe)."""

    def before_epoch(self):
        t = self.trainer
        if t.epoch >= t.max_epoch - t.exp.no_aug_epochs and not t.model.head.use_l1:
            t.loader.close_mosaic()
            t.model.head.use_l1 = True
            tqdm.write(f"epoch {t.epoch + 1}: mosaic and mixup off, L1 loss on")


class Multiscale(HookBase):
    """Every 10 iterations pick a new square-ish input size around exp.input_size."""

    def __init__(self, seed=None, every=10):
        self.rng, self.every = random.Random(seed), every

    def after_step(self):
        t = self.trainer
        if (t.iter + 1) % self.every or t.model.head.use_l1:  # fixed size in the no-aug tail
            return
        height, width = t.exp.input_size
        low = max(1, height // 32 - t.exp.multiscale_range)
        size = self.rng.randint(low, height // 32 + t.exp.multiscale_range)
        t.input_size = (32 * size, 32 * max(1, int(size * width / height)))

    def after_epoch(self):
        self.trainer.input_size = tuple(self.trainer.exp.input_size)


class Progress(HookBase):
    """A progress bar per epoch with loss parts, LR and the ETA of the whole run, and a summary
    line per epoch (only the summary lines when bars=False)."""

    def __init__(self, bars=True):
        self.bars = bars

    def before_train(self):
        self.started, self.done = time.perf_counter(), 0

    def before_epoch(self):
        t = self.trainer
        self.bar = tqdm(total=t.iters_per_epoch, desc=f"epoch {t.epoch + 1}/{t.max_epoch}",
                        dynamic_ncols=True, leave=False, disable=not self.bars)

    def after_step(self):
        t = self.trainer
        self.done += 1
        remaining = (t.max_epoch - t.epoch) * t.iters_per_epoch - (t.iter % t.iters_per_epoch) - 1
        eta = (time.perf_counter() - self.started) / self.done * remaining
        parts = {k.replace("_loss", ""): f"{t.losses[k]:.3f}" for k in LOSS_KEYS if k in t.losses}
        self.bar.set_postfix(parts | {"lr": f"{t.lr:.2e}", "size": t.input_size[0],
                                      "eta": time.strftime("%H:%M:%S", time.gmtime(eta))})
        self.bar.update()

    def after_epoch(self):
        self.bar.close()
        t = self.trainer
        line = f"epoch {t.epoch + 1}/{t.max_epoch}  loss {t.losses.get('total_loss', math.nan):.3f}"
        if t.metrics and t.metrics.get("epoch") == t.epoch + 1:
            line += f"  val mAP50:95 {_pct(t.metrics['mAP50_95'])}  mAP50 {_pct(t.metrics['mAP50'])}"
        tqdm.write(line)

    def after_train(self):
        if getattr(self, "bar", None) is not None:
            self.bar.close()


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


class Checkpointer(HookBase):
    """last.pth after every epoch (plus epoch_N.pth when exp.save_history_ckpt)."""

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
            "iteration": t.iter,
            "best_ap": float(t.best_ap),
            "class_names": list(t.exp.class_names),
            "input_size": list(t.exp.input_size),
            "exp_name": t.exp.exp_name,
        }

    def after_epoch(self):
        save_checkpoint(self.out_dir / "last.pth", self.state())
        if self.trainer.exp.save_history_ckpt:
            shutil.copyfile(self.out_dir / "last.pth", self.out_dir / f"epoch_{self.trainer.epoch + 1}.pth")


class Evaluator(HookBase):
    """Validate the EMA weights every `exp.eval_interval` epochs and on the last one; keep best.pth.

    Runs after the Checkpointer, so last.pth exists even if validation fails, and best.pth is
    a copy of the very checkpoint that scored best.
    """

    def __init__(self, evaluate, out_dir):
        self.evaluate, self.out_dir, self.history = evaluate, out_dir, []

    def after_epoch(self):
        t = self.trainer
        epoch = t.epoch + 1
        if epoch % t.exp.eval_interval and epoch != t.max_epoch:
            return
        model = t.ema.ema if t.ema is not None else t.model
        metrics = self.evaluate(model)
        t.model.train()
        metrics["epoch"] = epoch
        t.metrics = metrics
        ap = metrics["mAP50_95"] or 0.0
        if ap >= t.best_ap:
            t.best_ap = ap
            shutil.copyfile(self.out_dir / "last.pth", self.out_dir / "best.pth.tmp")
            (self.out_dir / "best.pth.tmp").replace(self.out_dir / "best.pth")
        self.history.append({k: metrics[k] for k in ("epoch", "mAP50_95", "mAP50", "mAP75")}
                            | {"loss": t.losses.get("total_loss"), "lr": t.lr})
        write_json(self.out_dir / "history.json", self.history, indent=1)


class Tracker(HookBase):
    """Send losses, LR and validation metrics to tensorboard, mlflow or wandb."""

    INSTALL = {"tensorboard": "pip install tensorboard", "mlflow": "pip install -e '.[mlflow]'",
               "wandb": "pip install -e '.[wandb]'"}

    def __init__(self, kind, out_dir, every=10):
        self.kind, self.out_dir, self.every = kind, out_dir, every

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
        except ImportError:
            raise UserError(f"tracker {self.kind!r} is not installed: {self.INSTALL[self.kind]} "
                            "(or set tracker = \"none\" in the Exp)") from None
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
        if (t.iter + 1) % self.every == 0:
            values = {f"train/{k}": v for k, v in t.losses.items()} | {"train/lr": t.lr}
            self._log(values, t.iter + 1)

    def after_epoch(self):
        t = self.trainer
        if t.metrics and t.metrics.get("epoch") == t.epoch + 1:
            self._log({f"val/{k}": t.metrics[k] for k in ("mAP50_95", "mAP50", "mAP75")
                       if t.metrics[k] is not None}, t.iter)

    def after_train(self):
        if not getattr(self, "active", False):
            return
        if self.kind == "tensorboard":
            self.writer.close()
        elif self.kind == "mlflow":
            import mlflow
            mlflow.end_run()
        elif self.kind == "wandb":
            import wandb
            wandb.finish()
