"""Device selection, seeding and execution mode for the MindSpore backend (SPEC sections 1, 9).

``--device-target CPU|GPU|Ascend`` with ``--gpu N`` goes to ``mindspore.set_device``
(MindSpore 2.5+). MindSpore fixes the device once per process: a second call with other
values fails, which is reported as a DeviceError.
"""
import os
import random

import numpy as np
import mindspore as ms

from common.engine.allocator import keep_freed_memory
from common.errors import DeviceError

__all__ = ["TARGETS", "MODES", "current_device", "limit_cpu_threads", "select_device", "set_seed", "set_mode",
           "enable_compile_cache"]

TARGETS = ("CPU", "GPU", "Ascend")
MODES = {"GRAPH": ms.GRAPH_MODE, "PYNATIVE": ms.PYNATIVE_MODE}
_current = {"device": ("CPU", 0)}


def current_device():
    """(target, device_id) chosen by the last :func:`select_device` call (('CPU', 0) before)."""
    return _current["device"]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def limit_cpu_threads(n=None) -> None:
    """Use at most ``n`` MindSpore CPU kernel threads (default: ``$OMP_NUM_THREADS`` when set,
    else this machine's cores shared among the workers of an msrun launch, ``MS_WORKER_NUM``,
    assumed on one machine); MindSpore's default of 25 oversubscribes small machines. MindSpore
    allows setting it once per process, so later calls are ignored."""
    if _current.get("threads"):
        return
    workers = int(os.environ.get("MS_WORKER_NUM", "1") or 1) if os.environ.get("MS_ROLE") else 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    default = int(omp) if omp.isdigit() and int(omp) > 0 else max(1, (os.cpu_count() or 1) // max(workers, 1))
    try:
        ms.device_context.cpu.op_tuning.threads_num(int(n or default))
    except (RuntimeError, AttributeError):
        pass
    _current["threads"] = True


def select_device(target: str = "CPU", gpu: int = 0):
    """``mindspore.set_device(target, gpu)`` (SPEC 9); returns (target, device_id).

    Any failure (plugin or driver missing, id out of range, device already fixed to another
    value in this process) becomes a one-line DeviceError."""
    if target not in TARGETS:
        raise DeviceError(f"unknown device target {target!r}: expected one of {', '.join(TARGETS)}")
    if target == "CPU":
        keep_freed_memory()  # common/engine/allocator.py: no page-faulting of activations each step
    gpu = int(gpu)
    if target == "CPU":
        limit_cpu_threads()
    try:
        ms.set_device(target, gpu)
    except (RuntimeError, ValueError, TypeError) as exc:
        # the runtime may already run on exactly this device (kernels executed before the
        # call): that is not an error
        if tuple(ms.get_current_device()) != (target, gpu) or ms.get_context("device_target") != target:
            raise DeviceError(f"MindSpore cannot use device {target}:{gpu}: {_first_line(exc)}") from None
    _current["device"] = (target, gpu)
    return _current["device"]


def set_seed(seed: int) -> None:
    """Seed python, numpy and MindSpore (``mindspore.set_seed``) for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    ms.set_seed(seed)


def set_mode(mode: str = "GRAPH") -> None:
    """'GRAPH' or 'PYNATIVE' -> ``mindspore.set_context(mode=...)``. The training engine
    additionally wraps its step in ``mindspore.jit`` when its own ``ms_mode`` is 'GRAPH'."""
    if mode not in MODES:
        raise ValueError(f"unknown execution mode {mode!r}: expected 'GRAPH' or 'PYNATIVE'")
    ms.set_context(mode=MODES[mode])


def enable_compile_cache(path: str) -> None:
    """Keep compiled GRAPH-mode graphs in ``path`` and reuse them in later processes
    (``mindspore.set_context(enable_compile_cache=True, compile_cache_path=path)``): a resumed
    or repeated run skips the compilation (tens of seconds for MVD on a CPU). '' does nothing."""
    if path:
        os.makedirs(path, exist_ok=True)
        ms.set_context(enable_compile_cache=True, compile_cache_path=path)
