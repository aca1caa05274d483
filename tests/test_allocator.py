"""common/engine/allocator.py: after keep_freed_memory(), a freed 16 MiB block stays in the
heap for the next step (glibc's ``mallinfo2`` free bytes), where glibc's defaults would have
mapped it separately and handed it back to the system on free."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = """
import ctypes, sys
from common.engine.allocator import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print("skip"); sys.exit(0)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
block = libc.malloc(16 << 20)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(applied, mapped >= (16 << 20), libc.mallinfo2().fordblks >= (16 << 20))
"""


def _probe(mode):
    r = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    if r.stdout.strip() == "skip":
        pytest.skip("no glibc mallinfo2 here")
    return r.stdout.split()


def test_freed_blocks_stay_in_the_heap_only_when_tuned():
    assert _probe("default") == ["False", "True", "False"]   # mapped apart, returned on free
    assert _probe("tuned") == ["True", "False", "True"]      # from the heap, kept after free


def test_the_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv("REID_KEEP_MALLOC", "1")
    assert _probe("tuned") == ["False", "True", "False"]
