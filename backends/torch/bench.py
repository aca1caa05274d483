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


def forward_backward(module: torch.nn.Module, x, ms_mode: str = "GRAPH", output=None) -> None:
    """Train-mode forward of ``module`` on ``x`` (NCHW) and the gradient of ``sum()`` of its
    output (element ``output`` of a tuple output, e.g. 1 = a re-ID model's embedding) w.r.t.
    its parameters; returns once the device has finished. ``ms_mode`` is accepted for
    symmetry with the MindSpore kernel and ignored."""
    module.train()
    device = model_device(module)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device) if not isinstance(x, torch.Tensor) else x
    module.zero_grad(set_to_none=True)
    out = module(x)
    (out if output is None else out[output]).sum().backward()
    sync(device)


def forward_no_grad(module: torch.nn.Module, x, ms_mode: str = "GRAPH") -> None:
    """Train-mode forward of ``module`` on ``x`` (NCHW) without gradients (VKD's frozen
    teacher in ``teacher_mode``); returns once the device has finished. ``ms_mode`` is
    ignored (symmetry with the MindSpore kernel)."""
    module.train()
    device = model_device(module)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device) if not isinstance(x, torch.Tensor) else x
    with torch.no_grad():
        module(x)
    sync(device)

