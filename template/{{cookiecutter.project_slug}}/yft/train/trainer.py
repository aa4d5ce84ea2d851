"""A small training loop; everything else (checkpoints, validation, logging) is a hook.

The loop knows nothing about CUDA: the device is an argument, mixed precision is a flag, and
the same code runs on a laptop CPU, an Apple GPU, an NVIDIA GPU or many of them (DDP).
"""

import time

import torch
from torch.nn.parallel import DistributedDataParallel

from yft.train import distributed
from yft.train.optim import set_lr


class HookBase:
    """Base class for hooks; override what you need. The trainer calls them in this order:

        hook.before_train()
        for epoch in range(start_epoch, max_epoch):
            hook.before_epoch()
            for each iteration of the epoch:
                hook.before_step()
                trainer.run_step()
                hook.after_step()
            hook.after_epoch()
            stop if any hook set trainer.should_stop (agreed across ranks)
        hook.after_train()          # also when training fails

    A hook reads the trainer's public state (see Trainer). Hooks that keep state across a
    resume implement state_dict() / load_state_dict(); the Checkpointer stores them by class name.
    """

    trainer = None

    def before_train(self): ...
    def before_epoch(self): ...
    def before_step(self): ...
    def after_step(self): ...
    def after_epoch(self): ...
    def after_train(self): ...


class Trainer:
    """Runs the optimisation; hooks do the rest.

    Public state hooks may read: epoch (0-based), iter (global, 0-based, counts batches),
    max_epoch, iters_per_epoch, input_size (current multiscale size), losses (floats of the
    last batch), lr (base LR), grad_norm, data_time / step_time (seconds, last batch),
    images_per_s, metrics (last validation or None), best_ap, should_stop, model (unwrapped),
    wrapped (the DistributedDataParallel wrapper under DDP, else the model), ema, optimizer,
    scaler, schedule, frozen_units.
    """

    def __init__(
        self, exp, model, optimizer, schedule, loader, device, iters_per_epoch, ema=None, amp_dtype=None
    ):
        self.exp, self.model, self.optimizer, self.schedule = exp, model, optimizer, schedule
        self.loader, self.device, self.ema = loader, device, ema
        self.iters_per_epoch, self.max_epoch = iters_per_epoch, exp.max_epoch
        self.amp_dtype = amp_dtype
        # fp16 needs loss scaling; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.input_size = tuple(exp.input_size)
        self.epoch, self.iter, self.start_epoch = 0, 0, 0
        self.lr, self.grad_norm, self.metrics, self.best_ap = 0.0, 0.0, None, 0.0
        self._loss_tensors, self._losses = {}, {}
        self.data_time = self.step_time = self.images_per_s = 0.0
        self.should_stop = False
        self.frozen_units, self.frozen_modules = [], []
        self.hooks = []
        self._data = None
        self.wrapped = model  # the DDP wrapper when distributed, else the model itself

    def register_hooks(self, hooks):
        """Add hooks in call order; None entries are dropped (so `Hook() if flag else None` works)."""
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self.hooks.append(hook)

    def _call(self, name):
        for hook in self.hooks:
            getattr(hook, name)()

    # ------------------------------------------------------------------ modes
    def train_mode(self):
        """model.train(), except frozen parts keep BatchNorm in eval (statistics stay pretrained)."""
        self.model.train()
        for module in self.frozen_modules:
            module.eval()

    def wrap(self):
        """Under DDP, train through DistributedDataParallel (it all-reduces the gradients).

        DDP fixes the parameters it synchronises when it wraps, so this runs again whenever
        the frozen set changes."""
        if distributed.world_size() > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=bool(self.frozen_units)
            )

    def set_frozen(self, units, frozen_modules):
        """Record what is frozen and re-wrap the model for DDP."""
        self.frozen_units, self.frozen_modules = list(units), list(frozen_modules)
        self.wrap()
        self.train_mode()

    # ------------------------------------------------------------------ loop
    def train(self):
        self.wrap()
        self.train_mode()
        self._data = iter(self.loader)
        self._call("before_train")
        try:
            # The hooks read the epoch from the trainer.
            for self.epoch in range(self.start_epoch, self.max_epoch):  # noqa: B020
                self._call("before_epoch")
                for _ in range(self.iters_per_epoch):
                    self._call("before_step")
                    self.run_step()
                    self._call("after_step")
                    self.iter += 1
                self._call("after_epoch")
                if distributed.any_true(self.should_stop, self.device):
                    self.should_stop = True
                    break
        finally:
            self._call("after_train")

    def run_step(self):
        started = time.perf_counter()
        images, targets, _, _ = next(self._data)
        images = images.to(self.device, non_blocking=True).float()
        if self.exp.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(self.device, non_blocking=True).float()
        loaded = time.perf_counter()
        if self.input_size != tuple(self.exp.input_size):  # multiscale: resize batch and boxes
            images, targets = self.exp.preprocess(images, targets, self.input_size)

        accumulate = max(1, int(self.exp.accumulate))
        stepping = (self.iter + 1) % accumulate == 0 or (self.iter + 1) % self.iters_per_epoch == 0
        distributed_run = distributed.world_size() > 1
        if distributed_run and not isinstance(self.wrapped, DistributedDataParallel):
            raise RuntimeError(
                f"{distributed.world_size()} processes but the model is not wrapped in "
                "DistributedDataParallel: the ranks would train apart (call wrap())"
            )
        # Under DDP, gradients are only all-reduced on the batch that steps the optimiser.
        sync = stepping or not distributed_run
        with torch.enable_grad() if sync else self.wrapped.no_sync():
            with torch.autocast(
                self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ):
                try:
                    outputs = self.wrapped(images, targets)
                except RuntimeError:
                    self.check_diverged(images)  # a diverged model fails inside YOLOX's loss: say so
                    raise
            loss = self.weighted_loss(outputs)
            parts = {k: v.detach() if torch.is_tensor(v) else v for k, v in outputs.items()}
            parts["total_loss"] = loss.detach()
            # What the logs record (every log_interval batches and the last batch of each epoch)
            # is the mean over all ranks; every rank takes part, so every rank checks the same value.
            last_of_epoch = (self.iter + 1) % self.iters_per_epoch == 0
            logged = last_of_epoch or (self.iter + 1) % self.exp.log_interval == 0
            if logged and distributed_run:
                parts = distributed.mean_over_ranks(parts, self.device)
            # Reading the loss waits for the GPU, so on GPUs it is checked at those batches
            # (before any checkpoint), not on every batch.
            if logged or self.device.type == "cpu":
                self.check_finite(parts["total_loss"])
            self.scaler.scale(loss / accumulate).backward()

        if stepping:
            self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            max_norm = self.exp.grad_clip if self.exp.grad_clip > 0 else float("inf")
            self.grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else 0.0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)

        self.lr = self.schedule(self.iter + 1)
        set_lr(self.optimizer, self.lr)
        self._loss_tensors = parts
        self._losses = None
        done = time.perf_counter()
        self.data_time, self.step_time = loaded - started, done - started
        self.images_per_s = images.shape[0] * distributed.world_size() / max(self.step_time, 1e-9)

    @property
    def losses(self):
        """Loss parts of the last batch as floats (read lazily: reading waits for the device).

        Under DDP: the mean over all ranks on logged batches (every exp.log_interval-th and the
        last of each epoch), this rank's own values on the others."""
        if self._losses is None:
            self._losses = {k: float(v) for k, v in self._loss_tensors.items()}
            if torch.is_tensor(self.grad_norm):
                self.grad_norm = float(self.grad_norm)
        return self._losses

    def check_finite(self, loss):
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at iteration {self.iter} (epoch {self.epoch + 1}); "
                "last.pth holds the last good epoch. Lower basic_lr_per_img, set grad_clip "
                "(e.g. --set grad_clip=10), or check the boxes with `invoke validate`"
            )

    def check_diverged(self, images):
        """FloatingPointError when the weights, or the head's outputs for `images`, are not finite
        (called only after a failure, so the extra forward pass costs nothing in normal runs)."""
        bad = next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is None:
            training = self.model.training
            self.model.eval()
            with torch.no_grad():
                outputs = self.model(images)
            self.model.train(training)
            bad = None if torch.isfinite(outputs).all() else "its outputs"
        if bad is not None:
            raise FloatingPointError(
                f"the model became non-finite ({bad}) at iteration {self.iter} (epoch {self.epoch + 1}): "
                "training diverged; last.pth holds the last good epoch. Lower basic_lr_per_img, set "
                "grad_clip (e.g. --set grad_clip=10), or check the boxes with `invoke validate`"
            )

    def weighted_loss(self, outputs):
        """YOLOX's total loss, or the weighted sum of its parts when exp's loss weights differ."""
        exp = self.exp
        weights = (exp.iou_loss_weight, exp.obj_loss_weight, exp.cls_loss_weight, exp.l1_loss_weight)
        if all(w == 1.0 for w in weights):
            return outputs["total_loss"]
        parts = [outputs[k] for k in ("iou_loss", "conf_loss", "cls_loss", "l1_loss")]
        return sum(w * p for w, p in zip(weights, parts))
