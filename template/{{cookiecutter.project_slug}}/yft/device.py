"""One place that decides where tensors live: cuda, mps or cpu."""

import torch

from yft.project import UserError


def pick_device(requested="auto"):
    """The torch.device to use; 'auto' prefers cuda, then mps, then cpu."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {requested}: Apple MPS is not available on this machine")
    return device


def describe(device):
    """A short human description, e.g. 'cuda:0 (NVIDIA H100)' or 'cpu (8 threads)'."""
    if device.type == "cuda":
        index = device.index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
