"""YOLOX training step: the official per-image loss vs yft's batched loss, in one run.

    python benchmarks/train_step.py                 # CPU, or the GPU when there is one
    python benchmarks/train_step.py --device cpu --size 320 --batch 8
    python benchmarks/train_step.py --size 640 --batch 64 --amp fp16      # the GPU defaults

Same model, same batch, same targets, same optimizer: the only difference is the head's loss path
(`yft.train.fast_loss.install_fast_loss` / `uninstall_fast_loss`). The two variants alternate step
by step on one model, so a busy machine slows both alike. For 1, 10 and 30 targets per image it
prints the median ms per training step (forward, loss, backward, optimizer step), images/s, the
ratio official / batched, the loss alone (forward + backward of `get_losses` on the same head
outputs) and the peak memory of a step (GPU: torch's allocator peak; CPU: the peak resident set
of a child process running only that variant, above its size before the first step).

The data loader is not part of the step measured here: batches are synthetic and already on the
device (random images, boxes of random size and place, 80 classes by default).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1] / "template" / "{{cookiecutter.project_slug}}"
sys.path.insert(0, str(PROJECT))

from yft.train.fast_loss import install_fast_loss, uninstall_fast_loss  # noqa: E402

SIZES = {
    "yolox_nano": (0.33, 0.25, True),
    "yolox_tiny": (0.33, 0.375, False),
    "yolox_s": (0.33, 0.50, False),
    "yolox_m": (0.67, 0.75, False),
    "yolox_l": (1.0, 1.0, False),
    "yolox_x": (1.33, 1.25, False),
}
AMP = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv=None):
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if gpu else "cpu")
    p.add_argument("--model", default="yolox_s", choices=SIZES)
    p.add_argument("--size", type=int, default=640 if gpu else 320, help="input size (px)")
    p.add_argument("--batch", type=int, default=64 if gpu else 8)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--targets", default="1,10,30", help="targets per image, comma separated")
    p.add_argument("--steps", type=int, default=20 if gpu else 4, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5 if gpu else 1)
    p.add_argument("--amp", default="fp16" if gpu else "none", choices=AMP)
    p.add_argument("--channels-last", action="store_true", help="channels_last model and images")
    p.add_argument("--fused", action="store_true", help="fused SGD (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (torch.set_num_threads); 1 is steadier on a busy machine",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak memory measurement")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build(args, targets):
    """Model, optimizer, scaler, images and labels; seeded, so every process builds the same."""
    from yolox.models import YOLOPAFPN, YOLOX, YOLOXHead

    torch.manual_seed(0)
    device = torch.device(args.device)
    depth, width, depthwise = SIZES[args.model]
    channels = [256, 512, 1024]
    model = YOLOX(
        YOLOPAFPN(depth, width, in_channels=channels, depthwise=depthwise),
        YOLOXHead(args.classes, width, in_channels=channels, depthwise=depthwise),
    )
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    model.head.initialize_biases(1e-2)
    model.to(device).train()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    if args.compile:
        model.backbone = torch.compile(model.backbone)
    # Tiny LR: the weights barely move, so both variants keep stepping the same model.
    opt = torch.optim.SGD(
        model.parameters(), lr=1e-6, momentum=0.9, nesterov=True, **({"fused": True} if args.fused else {})
    )
    scaler = torch.amp.GradScaler(device.type, enabled=AMP[args.amp] == torch.float16)

    gen = torch.Generator().manual_seed(1)
    B, S = args.batch, args.size
    images = torch.rand(B, 3, S, S, generator=gen).mul_(255).to(device, memory_format=fmt)
    labels = torch.zeros(B, 120, 5)
    u = torch.rand(B, targets, 4, generator=gen)
    wh = S * (0.02 + 0.5 * u[..., 2:] ** 2)  # many small boxes, some large ones, as in COCO
    labels[:, :targets, 0] = torch.randint(args.classes, (B, targets), generator=gen).float()
    labels[:, :targets, 1:3] = wh / 2 + (S - wh) * u[..., :2]
    labels[:, :targets, 3:5] = wh
    return model, opt, scaler, images, labels.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(model, opt, scaler, images, labels, amp):
    with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        out = model(images, labels)
    opt.zero_grad(set_to_none=True)
    scaler.scale(out["total_loss"]).backward()
    scaler.step(opt)
    scaler.update()


def set_variant(model, fast):
    (install_fast_loss if fast else uninstall_fast_loss)(model)


def time_steps(args, model, opt, scaler, images, labels):
    """Alternate the variants step by step; median seconds per step of each."""
    amp, device = AMP[args.amp], images.device
    times = {False: [], True: []}
    for i in range(args.warmup + args.steps):
        for fast in (False, True):
            set_variant(model, fast)
            sync(device)
            start = time.perf_counter()
            step(model, opt, scaler, images, labels, amp)
            sync(device)
            if i >= args.warmup:
                times[fast].append(time.perf_counter() - start)
    return {fast: statistics.median(t) for fast, t in times.items()}


def time_loss(args, model, images, labels):
    """Forward + backward of get_losses alone, on the head outputs of one forward pass."""
    head, amp, device = model.head, AMP[args.amp], images.device
    captured = {}
    official = type(uninstall_fast_loss(model))

    class Capture(official):
        def get_losses(self, *a, **kw):
            captured["args"], captured["kwargs"] = a, kw
            return official.get_losses(self, *a, **kw)

    head.__class__ = Capture
    with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        model(images, labels)
    head.__class__ = official
    a, kw = captured["args"], captured["kwargs"]
    outputs = a[5].detach().requires_grad_()
    origin = [o.detach().requires_grad_() for o in a[6]] if head.use_l1 else a[6]
    runs = {False: [], True: []}
    for i in range(args.warmup + args.steps):  # alternating, as the steps
        for fast in (False, True):
            set_variant(model, fast)
            sync(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = head.get_losses(*a[:5], outputs, origin, **kw)[0]
            loss.backward()
            sync(device)
            if i >= args.warmup:
                runs[fast].append(time.perf_counter() - start)
    return {fast: statistics.median(t) for fast, t in runs.items()}


def peak_memory_child(args, targets, fast):
    """Peak memory of a step of one variant (bytes), measured where it is not shared."""
    model, opt, scaler, images, labels = build(args, targets)
    set_variant(model, fast)
    device = images.device
    if device.type == "cuda":
        step(model, opt, scaler, images, labels, AMP[args.amp])
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(model, opt, scaler, images, labels, AMP[args.amp])
        sync(device)
        return torch.cuda.max_memory_allocated(device)
    import psutil

    before = psutil.Process().memory_info().rss
    for _ in range(2):
        step(model, opt, scaler, images, labels, AMP[args.amp])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def peak_memory(args, targets, fast):
    if args.device.startswith("cuda"):  # the allocator's peak separates the variants in-process
        return peak_memory_child(args, targets, fast)
    cmd = [sys.executable, __file__, *sys.argv[1:], "--memory-child", f"{targets},{int(fast)}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak"]


def describe(args):
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    flags = [f for f in ("channels_last", "fused", "compile") if getattr(args, f)]
    return (
        f"{args.model} {args.size}px, batch {args.batch}, {args.classes} classes, amp {args.amp}"
        f"{', ' + ', '.join(flags) if flags else ''}; {name}; torch {torch.__version__}; "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        targets, fast = (int(v) for v in args.memory_child.split(","))
        print(json.dumps({"peak": peak_memory_child(args, targets, bool(fast))}))
        return
    print(describe(args))
    header = (
        "targets/img",
        "official ms",
        "batched ms",
        "official img/s",
        "batched img/s",
        "step ratio",
        "loss ms official",
        "loss ms batched",
        "loss ratio",
        "peak MiB official",
        "peak MiB batched",
        "peak ratio",
    )
    print(" | ".join(header))
    for targets in (int(t) for t in args.targets.split(",")):
        model, opt, scaler, images, labels = build(args, targets)
        steps = time_steps(args, model, opt, scaler, images, labels)
        loss = time_loss(args, model, images, labels)
        del model, opt, scaler, images, labels
        if args.no_memory:
            mem = {False: float("nan"), True: float("nan")}
        else:
            mem = {fast: peak_memory(args, targets, fast) / 2**20 for fast in (False, True)}
        row = (
            targets,
            steps[False] * 1e3,
            steps[True] * 1e3,
            args.batch / steps[False],
            args.batch / steps[True],
            steps[False] / steps[True],
            loss[False] * 1e3,
            loss[True] * 1e3,
            loss[False] / loss[True],
            mem[False],
            mem[True],
            mem[True] / mem[False],
        )
        print(
            " | ".join(
                [str(row[0])]
                + [f"{v:.3g}" if i in (5, 8, 11) else f"{v:.1f}" for i, v in enumerate(row[1:], 1)]
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
