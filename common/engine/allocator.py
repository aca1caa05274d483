"""CPU memory allocator settings for training (glibc only).

A training step allocates and frees the same large activation and gradient buffers every
iteration. With glibc's defaults, freed blocks above the (dynamic) mmap threshold go back to
the operating system and the next step page-faults fresh zeroed pages in again; on a 2-core
machine that costs the full-size MVD torch step (ResNet-50 x 3, 288x144, 32+32 images) about
a fifth of its time (benchmarks/train_step.py: 1.33x -> 1.04x of the bare backbone work at
192x96). :func:`keep_freed_memory` tells glibc (``mallopt``) to keep up to a gigabyte of freed
memory in the heap and to serve blocks up to 32 MiB from it, as the environment variables
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...`` would at
process start. The process's resident memory stays near its peak instead of shrinking
between steps. Set ``REID_KEEP_MALLOC=1`` to leave the allocator as it is; other C
libraries are left alone.
"""
import ctypes
import os

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3   # glibc malloc.h
MMAP_THRESHOLD = 32 << 20   # glibc's largest mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
KEEP_BYTES = 1 << 30        # freed memory kept in the heap (trim threshold and top pad)
_done = {}


def keep_freed_memory() -> bool:
    """Apply the settings of the module docstring once per process; True when applied."""
    if "applied" in _done:
        return _done["applied"]
    applied = False
    if os.environ.get("REID_KEEP_MALLOC") != "1":
        libc = ctypes.CDLL(None)  # the C library this process already uses
        if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt"):
            applied = all(libc.mallopt(opt, value) == 1 for opt, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                                                            (M_TRIM_THRESHOLD, KEEP_BYTES),
                                                                            (M_TOP_PAD, KEEP_BYTES)))
    _done["applied"] = applied
    return applied
