"""Throughput of the VKD teacher training loader and the share of a step spent waiting for it.

On synthetic MARS (written with ``python -m common.data.synthetic --layout mars`` unless
``--root`` names a MARS folder), the teacher batch source (random chunked crop, per-frame
train augmentation, 256x128) is read for a few batches with:

* ``pool``: :func:`common.data.loader.iterate` at ``--workers`` (0 = in-process);
* ``threads``: the same batches from a thread pool (why the loader uses processes);
* ``torch-dl`` / ``ms-gen`` (``--native``): ``torch.utils.data.DataLoader`` and MindSpore's
  ``GeneratorDataset`` wrappers of backends/*/data.py ``make_native_loader``.

Each configuration is measured ``--repeats`` times, interleaved, and the median is printed
as frames/s with the ratio to in-process loading computed in the same run, and as CPU
milliseconds per frame summed over all processes (independent of how busy the machine is,
so loaders can be compared on a shared machine where wall-clock ratios are noisy). Then, for a step
of ``--step-seconds`` (simulated by sleeping, as a GPU step leaves the CPU to the workers;
``--measure-step`` times a small torch ResNet-18 training step on one batch instead), the
fraction of each training-loop iteration spent waiting for the next batch.

The default batch is P=16 identities x K=2 tracklets x N=8 frames = 256 frames, the size
of the reference's MARS teacher batch (P=8, K=4, N=8), because synthetic MARS has at most 3
tracklets per identity.

    python benchmarks/data_speed.py [--root DIR] [--workers 0,1,2] [--batches 6]
                                    [--repeats 3] [--step-seconds 0.5] [--native] [--quick]
"""
import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.data import synthetic  # noqa: E402
from common.data.loader import epoch_items, iterate  # noqa: E402
from common.data.video import build_train_batches  # noqa: E402
from common.data.video_eval import load_vkd_splits  # noqa: E402


def thread_iterate(source, epoch, workers):
    """Ordered batches from a pool of ``workers`` threads (for comparison only)."""
    items = epoch_items(source, epoch)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(lambda i: source.make_batch(epoch, i, items[i]), range(len(items)))


def loaders(a):
    out = [("pool", w, (lambda s, e, w=w: iterate(s, e, w, a.prefetch))) for w in a.workers]
    out += [("threads", w, (lambda s, e, w=w: thread_iterate(s, e, w))) for w in a.workers if w > 0]
    if a.native:
        from backends.mindspore.data import make_native_loader as ms_loader
        from backends.torch.data import make_native_loader as torch_loader
        out += [("torch-dl", w, (lambda s, e, w=w: torch_loader(s, e, w, a.prefetch))) for w in a.workers]
        out += [("ms-gen", w, (lambda s, e, w=w: ms_loader(s, e, w, a.prefetch))) for w in a.workers]
    return out


def cpu_seconds():
    """CPU time of this process and of its finished (reaped) child processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure_speed(source, a):
    """Per loader: median frames/s and median CPU ms per frame (all processes; a measure of
    cost that does not depend on how busy the machine is) over ``a.repeats`` interleaved
    epochs of ``a.batches`` batches."""
    times, cpus = {}, {}
    for r in range(a.repeats):
        for name, w, make in loaders(a):
            gc.collect()
            t0, c0 = time.perf_counter(), cpu_seconds()
            n = sum(1 for _ in make(source, r))
            gc.collect()
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            times.setdefault((name, w), []).append(wall / n)
            cpus.setdefault((name, w), []).append(cpu / n)
    return {k: (source.frames_per_batch / float(np.median(v)),
                1e3 * float(np.median(cpus[k])) / source.frames_per_batch) for k, v in times.items()}


def torch_step_seconds(source):
    """Median time of one ResNet-18 (width 16) forward/backward/SGD step on one batch."""
    import torch
    from backends.torch.backbones import build_backbone
    torch.manual_seed(0)
    net = build_backbone("resnet18", width=16)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    frames = torch.from_numpy(next(iterate(source, 0, 0))[0])
    x = frames.reshape(-1, *frames.shape[2:])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        opt.zero_grad()
        net(x).mean().backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_wait(source, workers, step, prefetch):
    """Fraction of the training loop's time spent in ``next(loader)`` with a ``step``-second
    step, from the second batch on (the first one includes the pool's start)."""
    it = iterate(source, 0, workers, prefetch)
    next(it)
    time.sleep(step)
    wait, t_start = 0.0, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        wait += time.perf_counter() - t0
        time.sleep(step)
    return wait / (time.perf_counter() - t_start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="", help="a MARS folder (default: write synthetic MARS to a temp dir)")
    p.add_argument("--ids", type=int, default=96, help="identities of the synthetic MARS")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--P", type=int, default=16)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--frames", type=int, default=8, help="num_train_images N")
    p.add_argument("--batches", type=int, default=6, help="batches per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prefetch", type=int, default=2)
    p.add_argument("--step-seconds", type=float, default=None,
                   help="training step time to weigh the loader against (e.g. the real torch step)")
    p.add_argument("--measure-step", action="store_true", help="time a ResNet-18 (width 16) torch step")
    p.add_argument("--native", action="store_true", help="also time torch DataLoader / MindSpore GeneratorDataset")
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    a = p.parse_args(argv)
    a.workers = [int(w) for w in a.workers.split(",")]
    if a.quick:
        a.ids, a.P, a.K, a.frames, a.batches, a.repeats = 8, 4, 2, 2, 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        root = a.root or synthetic.write("mars", tmp, a.ids, 0)
        train = load_vkd_splits("mars", root).train
        source = build_train_batches("mars", train, a.P, a.K, a.frames, max_batches=a.batches)
        print(f"VKD teacher loader, MARS {len(train)} tracklets, batch {a.P}x{a.K}x{a.frames} = "
              f"{source.frames_per_batch} frames of 256x128, {len(source)} batches x {a.repeats} repeats, "
              f"{os.cpu_count()} CPUs")
        speed = measure_speed(source, a)
        base = speed[("pool", 0)][0]
        print(f"{'loader':10s} {'workers':>7s} {'frames/s':>9s} {'vs w0':>6s} {'cpu ms/frame':>13s}")
        for (name, w), (fps, cpu) in speed.items():
            print(f"{name:10s} {w:7d} {fps:9.0f} {fps / base:6.2f} {cpu:13.2f}")
        step = a.step_seconds
        if a.measure_step:
            step = torch_step_seconds(source)
            print(f"measured torch ResNet-18 (width 16) step on one batch: {step:.3f} s")
        if step is not None:
            print(f"step {step:.3f} s: fraction of each iteration spent waiting for data")
            print(f"{'workers':>7s} {'wait':>6s} {'batch s':>8s} {'step s':>7s}")
            for w in a.workers:
                frac = measure_wait(source, w, step, a.prefetch)
                print(f"{w:7d} {frac:6.2f} {source.frames_per_batch / speed[('pool', w)][0]:8.3f} {step:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
