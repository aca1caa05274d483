"""Data-parallel scaling on this machine's CPU: training throughput (images per second) of
1 and 2 processes per backend, launched like a user would (``torchrun`` / ``msrun``), and the
efficiency ``rate(N) / (N * rate(1))``.

Each run is ``train.py`` on a synthetic SYSU-MM01 with the MVD routed recipe (ResNet-18 at
``--width``, ``--height`` x ``--height // 2`` inputs, P x K identities x images per process and
batch, so one step of one process sees 2 P K images, RGB + IR); every process runs
``--batches`` steps per epoch. The rate of a run is ``N * batches * 2 P K / epoch seconds``
with the epoch time from rank 0's metrics.jsonl (the loop's own clock: data, forward,
backward, averaging, update; evaluation excluded), the median over the epochs after the first
(which holds MindSpore's GRAPH compilation and the warm-up). Every process computes with
``--threads`` threads (default 1, ``OMP_NUM_THREADS``, which MindSpore's CPU kernels follow
too: backends/mindspore/device.py), so N processes use N x threads cores: on a shared,
loaded machine two torch threads in one process can be many times slower than one, which
would make any 1-process baseline meaningless.

    python benchmarks/scaling.py [--backends torch,mindspore] [--procs 1,2] [--epochs 3]
                                 [--batches 6] [--ids 4 --pos 4] [--width 16 --height 64]
                                 [--ms-mode GRAPH] [--threads 1] [--quick]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BIN = os.path.dirname(sys.executable)


def make_data(folder: str, ids: int, height: int) -> str:
    """A synthetic SYSU-MM01 under ``folder``, preprocessed at ``height`` x ``height // 2``."""
    import pre_process_sysu
    from common.data import synthetic
    root = synthetic.write("sysu", folder, ids=ids, seed=0)
    pre_process_sysu.preprocess(root, height, height // 2, progress=False)
    return root


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run(backend: str, procs: int, a, data: str, work: str) -> dict:
    """One launch; returns {'seconds': [per epoch], 'rate': images/s, 'images': per epoch}."""
    log_dir = os.path.join(work, f"{backend}-{procs}")
    argv = ["train.py", "--config", "configs/mvd_routed.yaml", "--dataset", "SYSU", "--data-path", data,
            "--backend", backend, "--ckpt", "t", "--ms-mode", a.ms_mode, "--epochs", str(a.epochs),
            "--warmup-steps", "1", "--optim", "sgd", "--lr", "0.01",
            *[x for kv in (f"train.log_dir={log_dir}", "model.arch=resnet18", f"model.width={a.width}",
                           f"data.height={a.height}", f"data.width={a.height // 2}", f"data.num_ids={a.ids}",
                           f"data.num_pos={a.pos}", f"data.max_batches={a.batches}", "data.eval_trials=1",
                           f"train.eval_every={a.epochs + 1}", "mvd.z_dim=32", "mvd.ib_hidden=[64,32]",
                           "mvd.cls_hidden=32", "mvd.dropout=0.0") for x in ("--set", kv)]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MS_", "RANK", "WORLD_", "MASTER_", "LOCAL_"))}
    env.update(PATH=BIN + os.pathsep + env.get("PATH", ""), PYTHONPATH=ROOT, GLOG_v="3",
               OMP_NUM_THREADS=str(a.threads))
    if backend == "torch":
        cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", str(procs), "--master_port", _port()]
    else:
        cmd = [os.path.join(BIN, "msrun"), "--worker_num", str(procs), "--local_worker_num", str(procs),
               "--master_port", _port(), "--log_dir", os.path.join(work, f"msrun-{procs}"), "--join", "True"]
    proc = subprocess.run(cmd + argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=a.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{backend} x{procs} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    with open(os.path.join(log_dir, "t", "metrics.jsonl")) as f:
        seconds = [json.loads(line)["seconds"] for line in f]
    images = procs * a.batches * 2 * a.ids * a.pos
    steady = seconds[1:] or seconds
    return {"seconds": seconds, "images": images, "rate": images / float(np.median(steady))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="torch,mindspore")
    p.add_argument("--procs", default="1,2", help="process counts to launch, comma-separated")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batches", type=int, default=6, help="steps per process and epoch")
    p.add_argument("--ids", type=int, default=4, help="identities per batch (P)")
    p.add_argument("--pos", type=int, default=4, help="images per identity and modality (K)")
    p.add_argument("--width", type=int, default=16, help="ResNet-18 stem width (64: the real network)")
    p.add_argument("--height", type=int, default=64, help="input height (width = height / 2)")
    p.add_argument("--ms-mode", default="GRAPH", choices=("GRAPH", "PYNATIVE"))
    p.add_argument("--threads", type=int, default=1, help="compute threads per process")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--quick", action="store_true", help="2 epochs of 2 steps, width 8, 32x16, PYNATIVE")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.batches, a.width, a.height, a.ids, a.pos, a.ms_mode = 2, 2, 8, 32, 3, 2, "PYNATIVE"
    procs = [int(n) for n in a.procs.split(",")]
    work = tempfile.mkdtemp(prefix="reid-scaling-")
    try:
        ids = max(2 * a.ids, 6)
        data = make_data(os.path.join(work, "data"), ids, a.height)
        print(f"MVD routed, ResNet-18 width {a.width}, {a.height}x{a.height // 2}, {a.ids} ids x {a.pos} images "
              f"x 2 modalities per process and step, {a.batches} steps per process and epoch, {a.epochs} epochs "
              f"(rate from epochs 1..{a.epochs - 1}); {a.threads} thread(s) per process, {os.cpu_count()} CPU "
              f"cores, load average {os.getloadavg()[0]:.1f}; MindSpore {a.ms_mode}")
        print(f"{'backend':<10} {'procs':>5} {'epoch_s':>8} {'img/s':>8} {'efficiency':>10}  every epoch (s)")
        for backend in a.backends.split(","):
            base = None
            for n in procs:
                r = run(backend, n, a, data, work)
                base = r["rate"] / n if base is None and n == 1 else base
                eff = r["rate"] / (n * base) if base else float("nan")
                print(f"{backend:<10} {n:>5} {float(np.median(r['seconds'][1:] or r['seconds'])):>8.3f} "
                      f"{r['rate']:>8.1f} {eff:>10.2f}  " + " ".join(f"{t:.2f}" for t in r["seconds"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
