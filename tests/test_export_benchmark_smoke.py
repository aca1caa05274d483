"""benchmarks/export_speed.py runs end to end in its quick mode. No timing is asserted; the
printed numbers must be consistent with each other (images/s = batch / time, speed-up =
torch time / onnxruntime time, up to the printed rounding) and the two runtimes must have
computed the same features."""
import os
import re
import subprocess
import sys

import pytest

from tests.parity.tolerances import EXPORT_ONNX_ATOL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ["batch", "torch_ms", "onnx_ms", "torch_img/s", "onnx_img/s", "speedup", "max_abs_diff"]


def _within(value, low, high, slack):
    return low - slack <= value <= high + slack


def test_export_speed_quick_prints_consistent_numbers():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    r = subprocess.run([sys.executable, "benchmarks/export_speed.py", "--quick", "--threads", "1", "--repeats", "3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert re.match(r"MVD resnet18 \(width 4\), 32x16, test feature four: torch \S+ vs onnxruntime \S+, CPU, "
                    r"1 thread\(s\); ONNX export took [0-9.]+ s; load average [0-9.]+ on \d+ cores$", lines[0]), lines[0]
    assert lines[1].split() == HEADER
    rows = [line.split() for line in lines[2:]]
    assert [int(row[0]) for row in rows] == [1, 32]
    d = 5e-4  # times are printed to 3 decimals (ms)
    for row in rows:
        batch = int(row[0])
        t_ms, o_ms, t_rate, o_rate, speedup, diff = (float(v) for v in row[1:])
        assert min(t_ms, o_ms) > 0
        assert _within(t_rate, 1e3 * batch / (t_ms + d), 1e3 * batch / max(t_ms - d, 1e-9), 0.005)
        assert _within(o_rate, 1e3 * batch / (o_ms + d), 1e3 * batch / max(o_ms - d, 1e-9), 0.005)
        assert _within(speedup, (t_ms - d) / (o_ms + d), (t_ms + d) / max(o_ms - d, 1e-9), 5e-4)
        assert 0 <= diff <= EXPORT_ONNX_ATOL
