"""The training-step benchmark runs end to end in its quick mode (numbers are not asserted:
speed targets live in the benchmark's own output, never in unit tests)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_benchmark_quick():
    r = subprocess.run([sys.executable, "benchmarks/train_step.py", "--quick", "--ms-mode", "PYNATIVE"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-3].split()[:4] == ["backend", "step", "s", "bare"]
    for name, line in zip(("torch", "mindspore"), lines[-2:]):
        fields = line.split()
        assert fields[0] == name and all(float(v) > 0 for v in fields[1:])
