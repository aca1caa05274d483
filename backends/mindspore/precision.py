"""Mixed precision for the MindSpore backend (``--amp off|fp16|bf16``; policy in
common/engine/runtime.py): the training step's forward and loss go through
``mindspore.amp.auto_mixed_precision(loss_fn, 'auto', dtype)`` (MindSpore's op-level
autocast: convolutions and matrix products in low precision, reductions, exp/log, softmax
and BatchNorm in float32), and fp16 adds ``mindspore.amp.DynamicLossScaler``. Applied to the
step's loss function rather than to the network, so evaluation stays float32 as in torch.
Mirrors backends/torch/precision.py.

Measured on this project's CPU build (MindSpore 2.8): fp16 runs, bf16 does not ("Select CPU
operator[Conv2D] fail! Unsupported data type!"), which :func:`check_amp` turns into one line.
"""
from typing import Callable, Optional

import numpy as np
import mindspore as ms
from mindspore import amp as ms_amp
from mindspore import ops

from common.engine import runtime
from common.errors import ConfigError

__all__ = ["DTYPES", "check_amp", "wrap_loss", "make_scaler"]

DTYPES = {"fp16": ms.float16, "bf16": ms.bfloat16}


def _dtype(amp: str):
    if amp not in runtime.AMP_MODES:
        raise ConfigError(f"unknown --amp {amp!r}: expected one of {', '.join(runtime.AMP_MODES)}")
    return DTYPES.get(amp)


def _probe(x, w):
    return ops.conv2d(x, w).sum()


def check_amp(amp: str, device=None) -> None:
    """Refuse, in one line, an ``amp`` the device cannot run: a tiny convolution and its
    gradient under ``auto_mixed_precision`` must work on the current device (``device`` is
    accepted for symmetry: MindSpore has one device per process)."""
    dtype = _dtype(amp)
    if dtype is None:
        return
    try:
        fn = ms.value_and_grad(ms_amp.auto_mixed_precision(_probe, "auto", dtype), (0, 1))
        value, _ = fn(ms.Tensor(np.ones((1, 2, 4, 4), np.float32)), ms.Tensor(np.ones((2, 2, 3, 3), np.float32)))
        value.asnumpy()
    except (RuntimeError, TypeError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("-")]
        target = ms.get_context("device_target")
        raise ConfigError(f"--amp {amp} cannot run on MindSpore {target}: {lines[0] if lines else type(exc).__name__}"
                          f"; use --amp off" + ("" if amp == "fp16" else " or --amp fp16")) from None


def wrap_loss(loss_fn: Callable, amp: str, device=None) -> Callable:
    """``loss_fn`` under MindSpore's op-level autocast (``auto_mixed_precision(..., 'auto',
    dtype)``); ``loss_fn`` itself when ``amp`` is 'off'."""
    dtype = _dtype(amp)
    return loss_fn if dtype is None else ms_amp.auto_mixed_precision(loss_fn, "auto", dtype)


def make_scaler(amp: str, device=None) -> Optional["ms_amp.DynamicLossScaler"]:
    """A dynamic loss scaler for fp16 (None otherwise): ``mindspore.amp.DynamicLossScaler`` with
    the shared constants of common/engine/runtime.py."""
    if _dtype(amp) is not ms.float16:
        return None
    return ms_amp.DynamicLossScaler(runtime.LOSS_SCALE_INIT, runtime.LOSS_SCALE_FACTOR, runtime.LOSS_SCALE_WINDOW)
