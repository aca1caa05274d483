"""Speed of the exported ONNX test feature on onnxruntime vs the torch backend's ``extract``,
on the CPU, in the same run, at batch 1 and batch 32.

The network is MVD's default (configs/mvd_port.yaml: three ResNet-50 encoders, the four-part
test feature, 288x144 inputs) with random weights; ``--quick`` uses a tiny one (ResNet-18 at
width 4, 32x16) for the smoke test. The model is exported in memory by the path of
``python -m tools.export`` (``backends/torch/export.py``), both runtimes get the same number
of threads (``--threads``, default: every core) and the same float32 batches, and their
calls are interleaved (torch, onnxruntime, torch, ...) so that a load change on the machine
hits both (on a shared machine the load average printed in the header says how noisy the
numbers are: torch's OpenMP threads suffer more than onnxruntime's from cores taken by
others, so compare ratios measured at a low load). Printed per batch size: the median time of one call of each, images/s, the
speed-up (torch time / onnxruntime time) and the largest feature difference between them.

Usage: python benchmarks/export_speed.py [--quick] [--threads N] [--repeats N]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCHES = (1, 32)
QUICK_SETS = ("model.arch=resnet18", "model.width=4", "mvd.z_dim=8", "mvd.ib_hidden=[16,8]", "mvd.cls_hidden=8",
              "data.height=32", "data.width=16")
HEADER = ("batch", "torch_ms", "onnx_ms", "torch_img/s", "onnx_img/s", "speedup", "max_abs_diff")


def build(quick: bool):
    """(torch backend, MVD model in eval mode, its configuration) with random weights."""
    import backends
    from common import recipes
    from common.config import load_config
    cfg = load_config(recipes.default_config("mvd"), QUICK_SETS if quick else (),
                      {"data": {"dataset": "SYSU", "data_path": "<benchmark>"}}, method="mvd")
    B = backends.get("torch")
    model = recipes.get("mvd").build_for_test(cfg, B, 395)[0]  # SYSU-MM01's 395 training identities
    model.eval()
    return B, model, cfg


def export_onnx(B, model, cfg, folder: str) -> str:
    """The ONNX file of the model's test feature (visible modality), as tools.export writes it."""
    from common.inference import test_input
    spec = test_input(cfg, "visible")
    path = os.path.join(folder, "mvd.onnx")
    B.export.export_features(model, path, spec.input_shape(), spec.extract_kwargs, spec.to_metadata(),
                             spec.input_name)
    return path


def time_pair(torch_call, onnx_call, repeats: int):
    """Median seconds of each call, interleaved after one warm-up call of each."""
    torch_call(), onnx_call()
    t_times, o_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        torch_call()
        t_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        onnx_call()
        o_times.append(time.perf_counter() - start)
    return statistics.median(t_times), statistics.median(o_times)


def run(quick: bool, threads: int, repeats: int):
    import torch
    from common.exported import OnnxRunner
    torch.set_num_threads(threads)
    B, model, cfg = build(quick)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = export_onnx(B, model, cfg, folder)
        export_s = time.perf_counter() - start
        runner = OnnxRunner(path, threads=threads)
        d = cfg["data"]
        rng = np.random.default_rng(0)
        for batch in BATCHES:
            x = rng.standard_normal((batch, 3, d["height"], d["width"])).astype(np.float32)
            want, got = B.mvd.extract(model, x, "visible", batch), runner(x)
            t_s, o_s = time_pair(lambda: B.mvd.extract(model, x, "visible", batch), lambda: runner(x),
                                 repeats if batch == 1 or quick else max(2, repeats // 4))
            rows.append((batch, t_s, o_s, float(np.abs(got - want).max())))
    return cfg, export_s, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny network (smoke test)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of both runtimes")
    p.add_argument("--repeats", type=int, default=12, help="timed calls at batch 1 (a quarter at batch 32)")
    args = p.parse_args(argv)
    from common.optional import require
    onnxruntime = require("onnxruntime", "benchmarks/export_speed.py")
    require("onnxscript", "benchmarks/export_speed.py")
    import torch
    cfg, export_s, rows = run(args.quick, max(1, args.threads), max(1, args.repeats))
    m, d = cfg["model"], cfg["data"]
    print(f"MVD {m['arch']} (width {m['width']}), {d['height']}x{d['width']}, test feature "
          f"{cfg['mvd']['test_feature']}: torch {torch.__version__} vs onnxruntime {onnxruntime.__version__}, "
          f"CPU, {args.threads} thread(s); ONNX export took {export_s:.1f} s; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    print(" ".join(f"{h:>12}" for h in HEADER))
    for batch, t_s, o_s, diff in rows:
        t_ms, o_ms = 1e3 * t_s, 1e3 * o_s
        print(f"{batch:>12d} {t_ms:>12.3f} {o_ms:>12.3f} {batch / t_s:>12.2f} {batch / o_s:>12.2f} "
              f"{t_s / o_s:>12.3f} {diff:>12.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
