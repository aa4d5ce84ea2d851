"""A small training loop; everything else (checkpoints, validation, logging) is a hook.

The loop knows nothing about CUDA: the device is an argument, mixed precision is a flag, and
the same code runs on a laptop CPU, an Apple GPU or an NVIDIA GPU.
"""

import torch


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
        hook.after_train()          # also when training fails

    A hook reads the trainer's public state (epoch, iter, losses, lr, model, ema, metrics ...).
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

    Public state hooks may read: epoch, iter (global, 0-based), max_epoch, iters_per_epoch,
    input_size (current multiscale size), losses (dict of floats of the last step), lr,
    metrics (dict of the last validation, or None), best_ap, model, ema, optimizer.
    """

    def __init__(self, exp, model, optimizer, scheduler, loader, device, iters_per_epoch,
                 ema=None, amp_dtype=None):
        self.exp, self.model, self.optimizer, self.scheduler = exp, model, optimizer, scheduler
        self.loader, self.device, self.ema = loader, device, ema
        self.iters_per_epoch, self.max_epoch = iters_per_epoch, exp.max_epoch
        self.amp_dtype = amp_dtype
        # fp16 needs loss scaling; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.input_size = tuple(exp.input_size)
        self.epoch, self.iter, self.start_epoch = 0, 0, 0
        self.losses, self.lr, self.metrics, self.best_ap = {}, 0.0, None, 0.0
        self._hooks = []
        self._data = None

    def register_hooks(self, hooks):
        """Add hooks in call order; None entries are dropped (so `Hook() if flag else None` works)."""
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self._hooks.append(hook)

    def _call(self, name):
        for hook in self._hooks:
            getattr(hook, name)()

    def train(self):
        self.model.train()
        self._data = iter(self.loader)
        self._call("before_train")
        try:
            for self.epoch in range(self.start_epoch, self.max_epoch):
                self._call("before_epoch")
                for _ in range(self.iters_per_epoch):
                    self._call("before_step")
                    self.run_step()
                    self._call("after_step")
                    self.iter += 1
                self._call("after_epoch")
        finally:
            self._call("after_train")

    def run_step(self):
        images, targets, _, _ = next(self._data)
        images = images.to(self.device, non_blocking=True).float()
        targets = targets.to(self.device, non_blocking=True).float()
        if self.input_size != tuple(self.exp.input_size):  # multiscale: resize batch and boxes
            images, targets = self.exp.preprocess(images, targets, self.input_size)

        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(images, targets)
        loss = outputs["total_loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at iteration {self.iter} (epoch {self.epoch + 1}); "
                "lower the learning rate (basic_lr_per_img) or check the boxes with `invoke validate`"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)

        self.lr = self.scheduler.update_lr(self.iter + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.losses = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in outputs.items()}
