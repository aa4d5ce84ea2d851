"""Command-line entry for one training process: `python -m yft.train.cli` (torchrun runs this on
every rank). `invoke train` calls `train()` directly for one process, or `launch()` for several."""

import argparse
import os
import subprocess
import sys

from yft.project import ROOT, UserError


def parser():
    p = argparse.ArgumentParser(prog="python -m yft.train.cli", description=__doc__)
    p.add_argument("--exp", help="Exp file (default: [tool.yft] exp in pyproject.toml)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--ckpt", help="start from these weights")
    p.add_argument("--from-scratch", action="store_true", help="random weights, from-scratch hyperparameters")
    p.add_argument("--resume", action="store_true", help="continue the latest run's last.pth (or --name's)")
    p.add_argument("--name", help="run folder name under runs/<exp>/ (default: train, train2, ...)")
    p.add_argument("--smoke", action="store_true", help="a few iterations at a tiny size")
    p.add_argument("--batch-size", type=int, default=0, help="total batch size over all processes")
    p.add_argument("--amp", choices=["fp16", "bf16"], help="mixed precision")
    p.add_argument("--strategy", help="full, head, progressive or classes")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value Exp override")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    from yft.device import pick_device
    from yft.project import load_exp
    from yft.train.run import train

    args = parser().parse_args(argv)
    try:
        exp = load_exp(args.exp, args.overrides)
        train(
            exp,
            pick_device(args.device),
            ckpt=args.ckpt,
            resume=args.resume,
            smoke=args.smoke,
            name=args.name,
            from_scratch=args.from_scratch,
            batch_size=args.batch_size or None,
            amp=args.amp,
            strategy=args.strategy,
            progress=False if args.quiet else None,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def launch(argv, devices, nnodes=1, node_rank=0, master_addr="127.0.0.1", master_port=29500):
    """Run `python -m yft.train.cli ARGV` in `devices` processes per node through torchrun."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={devices}",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        f"--master_addr={master_addr}",
        f"--master_port={master_port}",
        "-m",
        "yft.train.cli",
        *argv,
    ]
    print("+", " ".join(command), flush=True)
    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank ends here once its process group is destroyed and its files written
        # (checkpoints atomically, trackers closed in after_train). Interpreter teardown can still
        # meet a gloo thread left joinable and abort ("terminate called without an active
        # exception", seen once in four CI runs), failing a finished run: skip the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
