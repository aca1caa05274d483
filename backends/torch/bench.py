"""Benchmark kernels of the PyTorch backend (benchmarks/train_step.py): the bare work a
training step is compared against. Kept out of the training engine."""
import numpy as np
import torch

from .device import current_device
from .engine import model_device

__all__ = ["forward_backward", "forward_no_grad", "sync"]


def sync(device=None) -> None:
    """Wait for queued work on ``device`` (default: the current device; CUDA only), so
    wall-clock timing is meaningful."""
    device = current_device() if device is None else device
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _input(module, x):
    device = model_device(module)
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device) if not isinstance(x, torch.Tensor) else x


def forward_backward(module: torch.nn.Module, x, ms_mode: str = "GRAPH", output=None) -> None:
    """Train-mode forward of ``module`` on ``x`` (NCHW) and the gradient of ``sum()`` of its
    output (element ``output`` of a tuple output, e.g. 1 = the embedding of a re-ID model)
    w.r.t. its parameters; returns once the device has finished. ``ms_mode`` is accepted for
    symmetry with the MindSpore kernel and ignored."""
    module.train()
    x = _input(module, x)
    module.zero_grad(set_to_none=True)
    out = module(x)
    (out if output is None else out[output]).sum().backward()
    sync(model_device(module))


def forward_no_grad(module: torch.nn.Module, x, ms_mode: str = "GRAPH", train: bool = True) -> None:
    """Forward of ``module`` on ``x`` without gradient (train mode: batch-statistics BN, as a
    distillation teacher); returns once the device has finished."""
    module.train(train)
    with torch.no_grad():
        module(_input(module, x))
    sync(model_device(module))
