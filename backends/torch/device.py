"""Device selection, seeding and execution mode for the PyTorch backend (SPEC sections 1, 9, 10).

``--device-target CPU|GPU|Ascend`` with ``--gpu N`` maps to ``cpu`` / ``cuda:N`` / ``npu:N``
(the latter needs the optional ``torch_npu`` package). The chosen device is remembered as
the backend's current device so engines and data loaders can move tensors there.
"""
import random

import numpy as np
import torch

from common.engine.allocator import keep_freed_memory
from common.errors import DeviceError

__all__ = ["TARGETS", "current_device", "select_device", "set_seed", "set_mode", "enable_compile_cache"]

TARGETS = ("CPU", "GPU", "Ascend")
_current = {"device": torch.device("cpu")}


def current_device() -> torch.device:
    """The device chosen by the last :func:`select_device` call (``cpu`` before any call)."""
    return _current["device"]


def select_device(target: str = "CPU", gpu: int = 0) -> torch.device:
    """Map ``--device-target``/``--gpu`` (SPEC 9) to a ``torch.device`` and make it current.

    'CPU' -> cpu; 'GPU' -> cuda:<gpu> (DeviceError when CUDA is unavailable or ``gpu`` is out
    of range); 'Ascend' -> npu:<gpu> (DeviceError when ``torch_npu`` is not installed)."""
    if target not in TARGETS:
        raise DeviceError(f"unknown device target {target!r}: expected one of {', '.join(TARGETS)}")
    if target == "CPU":
        keep_freed_memory()  # common/engine/allocator.py: no page-faulting of activations each step
    gpu = int(gpu)
    if target == "CPU":
        device = torch.device("cpu")
    elif target == "GPU":
        if not torch.cuda.is_available():
            raise DeviceError("device target GPU requested but CUDA is not available to torch "
                              f"(torch {torch.__version__}); use --device-target CPU")
        count = torch.cuda.device_count()
        if not 0 <= gpu < count:
            raise DeviceError(f"--gpu {gpu} is out of range: {count} CUDA device(s) visible (0..{count - 1})")
        device = torch.device("cuda", gpu)
        torch.cuda.set_device(device)
    else:
        try:
            import torch_npu  # noqa: F401  (registers the 'npu' device type)
        except ImportError:
            raise DeviceError("device target Ascend needs the torch_npu package, which is not "
                              "installed; use --device-target CPU or install torch_npu") from None
        device = torch.device("npu", gpu)
    _current["device"] = device
    return device


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch and make torch deterministic in float32 (SPEC 10):
    deterministic cuDNN, no benchmark autotuning, TF32 off for matmul and convolutions."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def set_mode(mode: str = "GRAPH") -> None:
    """Accepted for symmetry with the MindSpore backend and ignored: torch always runs
    eagerly ('GRAPH' and 'PYNATIVE' behave the same here). Unknown modes are rejected."""
    if mode not in ("GRAPH", "PYNATIVE"):
        raise ValueError(f"unknown execution mode {mode!r}: expected 'GRAPH' or 'PYNATIVE'")


def enable_compile_cache(path: str) -> None:
    """Nothing to do in PyTorch (eager execution); the MindSpore twin keeps compiled graphs."""
