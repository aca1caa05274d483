"""MVD training-step overhead and data-pipeline throughput, per backend (issue 3, item 9).

For each backend, in the same run and on the same inputs:
* ``step``: one full MVD training step (three encoders, IB heads, every loss term, backward,
  optimizer update) on a batch of B RGB + B IR images;
* ``bare``: forward + backward of one bare backbone on the same 4B images (the shared encoder
  sees 2B, the two modality encoders B each: the same backbone work without the method);
* ratio = step / bare: the method's overhead (target below 1.3x).
Then the data pipeline (sampler + MVD train transforms) in images per second against the
model's consumption rate (2B input images per step / step time).

    python benchmarks/train_step.py [--backends torch,mindspore] [--depth 50 --width 64]
                                    [--height 288 --width-px 144] [--batch-ids 8 --pos 4] [--quick]
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_backend(name, a, rgb, ir, labels, num_classes):
    import backends
    B = backends.get(name)
    B.device.set_mode(a.ms_mode)
    B.device.select_device(a.device_target, 0)
    B.device.set_seed(0)
    cfg_model = {"name": "mvd", "depth": a.depth, "width": a.width, "z_dim": a.z_dim,
                 "ib_hidden": [a.ib_hidden, a.ib_hidden // 2], "cls_hidden": 256, "dropout": 0.5}
    model = B.mvd.build_model(cfg_model, num_classes)
    opt = B.optim.build_optimizer(model, "adam", 3.5e-4, 5e-4, 0.9, 10.0)
    trainer = B.engine.MVDTrainer(model, opt, {"loss_func": "id+tri+kldiv"}, a.ms_mode)
    step = timed(lambda: trainer.train_step(rgb, ir, labels), a.repeats)
    four = np.concatenate([rgb, ir, rgb, ir])
    if name == "mindspore":
        bare = timed(lambda: B.engine.forward_backward_backbone(model, four, a.ms_mode), a.repeats)
    else:
        bare = timed(lambda: B.engine.forward_backward_backbone(model, four), a.repeats)
    return step, bare


def bench_pipeline(a, n_batches):
    from common.mvd_data import CrossModalBatches
    rng = np.random.default_rng(0)
    n, ids = 400, 40
    imgs = rng.integers(0, 255, (n, a.height, a.width_px, 3), dtype=np.uint8)
    labels = np.arange(n) % ids
    loader = CrossModalBatches(imgs, labels, imgs, labels, a.height, a.width_px, a.batch_ids, a.pos,
                               max_batches=n_batches)
    t0 = time.perf_counter()
    count = sum(len(r) + len(i) for r, i, _ in loader.epoch(0))
    return count / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="torch,mindspore")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--width", type=int, default=64, help="ResNet base width (64 = the real model)")
    p.add_argument("--z-dim", type=int, default=512)
    p.add_argument("--ib-hidden", type=int, default=1000)
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width-px", type=int, default=144)
    p.add_argument("--batch-ids", type=int, default=8)
    p.add_argument("--pos", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device-target", default="CPU")
    p.add_argument("--ms-mode", default="GRAPH")
    p.add_argument("--quick", action="store_true", help="tiny model and inputs (smoke test)")
    a = p.parse_args(argv)
    if a.quick:
        a.depth, a.width, a.z_dim, a.ib_hidden = 18, 8, 16, 32
        a.height, a.width_px, a.batch_ids, a.pos, a.repeats = 64, 32, 4, 2, 2
    bsz = a.batch_ids * a.pos
    rng = np.random.default_rng(0)
    rgb = rng.standard_normal((bsz, 3, a.height, a.width_px)).astype(np.float32)
    ir = rng.standard_normal((bsz, 3, a.height, a.width_px)).astype(np.float32)
    labels = np.repeat(np.arange(a.batch_ids), a.pos).astype(np.int64)
    print(f"MVD ResNet-{a.depth} width {a.width}, batch {bsz} RGB + {bsz} IR at {a.height}x{a.width_px}, "
          f"{a.device_target}")
    rows = []
    for name in a.backends.split(","):
        step, bare = bench_backend(name, a, rgb, ir, labels, num_classes=max(a.batch_ids, 16))
        rows.append((name, step, bare))
    pipe = bench_pipeline(a, n_batches=3 if a.quick else 10)
    print(f"{'backend':<10} {'step s':>8} {'bare s':>8} {'ratio':>6} {'model img/s':>12} {'pipeline img/s':>15}")
    for name, step, bare in rows:
        print(f"{name:<10} {step:8.3f} {bare:8.3f} {step / bare:6.2f} {2 * bsz / step:12.1f} {pipe:15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
