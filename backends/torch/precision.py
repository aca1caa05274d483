"""Mixed precision for the PyTorch backend (``--amp off|fp16|bf16``; policy in
common/engine/runtime.py): ``torch.autocast`` around the forward and the loss of a training
step, and for fp16 a ``torch.amp.GradScaler`` (dynamic loss scaling). Parameters, optimizer
state and evaluation stay float32. The MindSpore twin is backends/mindspore/precision.py.
"""
import functools
import warnings
from typing import Callable, Optional

import torch

from common.engine import runtime
from common.errors import ConfigError

from .device import current_device

__all__ = ["DTYPES", "check_amp", "wrap_loss", "make_scaler"]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _dtype(amp: str):
    if amp not in runtime.AMP_MODES:
        raise ConfigError(f"unknown --amp {amp!r}: expected one of {', '.join(runtime.AMP_MODES)}")
    return DTYPES.get(amp)


def check_amp(amp: str, device=None) -> None:
    """Refuse, in one line, an ``amp`` the device cannot run: a tiny convolution, linear layer
    and backward under autocast must work on ``device`` (default: the current device)."""
    dtype = _dtype(amp)
    if dtype is None:
        return
    device = torch.device(device) if device is not None else current_device()
    try:
        with warnings.catch_warnings():
            # CUDA autocast without bf16 support only warns ("Disabling autocast"): an error here
            warnings.simplefilter("error", UserWarning)
            x = torch.ones(1, 2, 4, 4, device=device, requires_grad=True)
            w = torch.ones(2, 2, 3, 3, device=device, requires_grad=True)
            with torch.autocast(device.type, dtype=dtype):
                y = torch.nn.functional.conv2d(x, w).flatten(1) @ torch.ones(8, 2, device=device)
            y.float().sum().backward()
    except (RuntimeError, TypeError, ValueError, UserWarning) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--amp {amp} cannot run on torch device {device}: {first}; use --amp off") from None


def wrap_loss(loss_fn: Callable, amp: str, device=None) -> Callable:
    """``loss_fn`` run under ``torch.autocast(device type, dtype of amp)``; ``loss_fn`` itself
    when ``amp`` is 'off'."""
    dtype = _dtype(amp)
    if dtype is None:
        return loss_fn
    kind = (torch.device(device) if device is not None else current_device()).type

    @functools.wraps(loss_fn)
    def autocast_loss(*tensors):
        with torch.autocast(kind, dtype=dtype):
            return loss_fn(*tensors)
    return autocast_loss


def make_scaler(amp: str, device=None) -> Optional["torch.amp.GradScaler"]:
    """A dynamic loss scaler for fp16 (None otherwise): ``torch.amp.GradScaler`` with the shared
    constants of common/engine/runtime.py."""
    if _dtype(amp) is not torch.float16:
        return None
    kind = (torch.device(device) if device is not None else current_device()).type
    return torch.amp.GradScaler(kind, init_scale=runtime.LOSS_SCALE_INIT, growth_factor=runtime.LOSS_SCALE_FACTOR,
                                backoff_factor=1.0 / runtime.LOSS_SCALE_FACTOR,
                                growth_interval=runtime.LOSS_SCALE_WINDOW)
