"""torch.distributed for multi-GPU and multi-node training, started by torchrun.

`invoke train --devices N` runs `torchrun --nproc_per_node N -m yft.train.cli ...`; each process
reads RANK / LOCAL_RANK / WORLD_SIZE from the environment. Without them everything falls back
to one process and none of this does anything.
"""

import datetime
import os

import torch
import torch.distributed as dist

# Every rank detects on its share of the validation images, then rank 0 alone scores them and
# writes checkpoints and figures while the others wait: allow for a long COCO evaluation.
TIMEOUT = datetime.timedelta(hours=2)


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main():
    return rank() == 0


def launched_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device):
    """Join the process group when torchrun started us; return this process's device.

    nccl on CUDA (one GPU per process, by LOCAL_RANK), gloo on CPU.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return device


def shutdown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    if world_size() > 1:
        dist.barrier()


def any_true(flag, device):
    """True on every rank when `flag` is true on any rank (e.g. early stopping decided by rank 0)."""
    if world_size() == 1:
        return bool(flag)
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def weights_disagreement(model, device):
    """Largest absolute difference of any parameter between this rank and rank 0 (0.0 when in sync)."""
    if world_size() == 1:
        return 0.0
    worst = torch.zeros(1, device=device)
    for param in model.parameters():
        reference = param.detach().clone()
        dist.broadcast(reference, src=0)
        worst = torch.maximum(worst, (param.detach() - reference).abs().max().reshape(1))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst.item())


def broadcast_float(value, device):
    """Rank 0's value on every rank (for decisions only rank 0 can make, e.g. LR on plateau)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def broadcast_object(value):
    """Rank 0's picklable value on every rank (e.g. the run folder only rank 0 may create)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value):
    """Every rank's picklable value, in rank order, on every rank ([value] in one process)."""
    if world_size() == 1:
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(values, device):
    """{name: number or scalar tensor} -> {name: scalar tensor}, each the mean over all ranks
    (one all-reduce for the lot)."""
    names = list(values)
    stacked = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float32, device=device).detach().reshape(()) for k in names]
    )
    if world_size() > 1:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= world_size()
    return dict(zip(names, stacked.unbind()))


def broadcast_model(model):
    """Rank 0's parameters and buffers everywhere (before the EMA copies them)."""
    if world_size() > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
