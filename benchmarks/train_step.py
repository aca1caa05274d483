"""Training-step overhead per method and backend, against the bare backbone work measured in
the same run on the same inputs.

``--method mvd`` (the port recipe, configs/mvd_port.yaml): ``step`` = one full training step
(four paths through three encoders, IB heads, every loss term, backward, optimizer update) on
B RGB + B IR images; ``bare`` = forward + backward of each encoder's backbone alone on its
real inputs (visible on the 2B images, infrared on their grey copies, shared on both: four
backbone passes of 2B images); ratio = step / bare (target below 1.3). Each backend is
measured in a process of its own (a fresh heap, one framework's thread pools). Then the data pipeline
(sampler + train transforms) in images per second against the model's consumption rate.

``--method vkd-student`` (configs/vkd_student.yaml, aimagelab/VKD tools/train_distill.py):
``step`` = one distillation step (the frozen teacher on B clips of N frames, the student on M
of them, triplet + CE + distance-preserving + KD, backward, Adam update); ``bare`` = the
teacher backbone's no-grad train-mode forward on N*B frames + the student backbone's forward
and backward on M*B frames, measured in the same run; ratio = step / bare. The measured torch
step time is then handed to benchmarks/data_speed.py (``--step-seconds``) for the fraction of
each iteration the loader keeps the step waiting, for batches of the same B clips of N frames.

``--method kd-reid`` (configs/kdreid_kd.yaml, batch alternation): ``step`` = one batch of the
batch engine, i.e. T student steps (one per teacher: the student on the source and the target
batch, teacher t without gradient on its target batch, the relation-KD loss, backward, SGD);
``bare`` = the sum, over the T teachers, of teacher t's no-grad forward on its target batch and
the student's forward on the source batch plus forward and backward on the target batch (the
network work the step cannot avoid); ratio = step / bare. OSNet x0_25 student, ``--teachers``
ResNet-50 teachers (width ``--width``, 2048-d embeddings), P x K images per batch.

    python benchmarks/train_step.py [--method mvd|vkd-student|kd-reid] [--backends torch,mindspore]
        [--arch resnet50] [--height 288 --width-px 144] [--batch-ids 8 --pos 4] [--frames 8 --student-frames 2]
        [--teachers 3] [--threads N] [--quick]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(fn, repeats, warmup=2):
    """Median seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def mvd_config(a):
    from common.config import load_config
    sets = [f"model.arch={a.arch}", f"model.width={a.width}", f"data.height={a.height}", f"data.width={a.width_px}",
            f"data.num_ids={a.batch_ids}", f"data.num_pos={a.pos}", f"runtime.ms_mode={a.ms_mode}",
            "mvd.loss_func=id+tri+kldiv"]
    if a.quick:
        sets += ["mvd.z_dim=16", "mvd.ib_hidden=[32,16]", "mvd.cls_hidden=16"]
    return load_config(os.path.join(ROOT, "configs", "mvd_port.yaml"), sets)


def bench_mvd(name, a, rgb, ir, labels, num_classes):
    """(step seconds, bare seconds) of the MVD port recipe with backend ``name``."""
    import backends
    from common.recipes import mvd as recipe
    cfg = mvd_config(a)
    B = backends.get(name)
    B.device.set_mode(a.ms_mode)
    B.device.select_device(a.device_target, 0)
    B.device.set_seed(0)
    model = B.mvd.build_model(cfg, num_classes)
    trainer = B.mvd.MVDTrainer(model, recipe.build_optimizer(cfg, B, model), cfg["mvd"], a.ms_mode)
    step = timed(lambda: trainer.train_step(rgb, ir, labels), a.repeats)
    x = np.concatenate([rgb, ir])
    c = cfg["mvd"]["gray_coeffs"]
    g = np.repeat(c[0] * x[:, 0:1] + c[1] * x[:, 1:2] + c[2] * x[:, 2:3], 3, axis=1).astype(np.float32)
    work = [(model.visible.backbone, x), (model.infrared.backbone, g), (model.shared.backbone, x),
            (model.shared.backbone, g)]

    def bare_step():
        for module, inputs in work:
            B.bench.forward_backward(module, inputs, a.ms_mode)
    return step, timed(bare_step, a.repeats)


def bench_pipeline(a, n_batches):
    """Images per second of the port recipe's MVD data pipeline (sampler + transforms)."""
    from common.data.cross_modal import CrossModalBatches, make_sampler
    from common.recipes.mvd import train_transforms
    cfg = mvd_config(a)
    rng = np.random.default_rng(0)
    n, ids = 400, 40
    imgs = rng.integers(0, 255, (n, a.height, a.width_px, 3), dtype=np.uint8)
    labels = np.arange(n) % ids
    rgb_tf, ir_tf = train_transforms(cfg)
    loader = CrossModalBatches(imgs, labels, imgs, labels, rgb_tf, ir_tf,
                               make_sampler("port", labels, labels, a.batch_ids, a.pos, 0), max_batches=n_batches)
    t0 = time.perf_counter()
    count = sum(len(r) + len(i) for r, i, _ in loader.epoch(0))
    return count / (time.perf_counter() - t0)


def set_threads(n, names):
    """``n`` CPU threads for the kernels of each framework in ``names`` (on a small shared
    machine the defaults oversubscribe the cores and the timings become noise)."""
    if "torch" in names:
        import torch
        torch.set_num_threads(n)
    if "mindspore" in names:
        import mindspore as ms
        try:
            ms.device_context.cpu.op_tuning.threads_num(n)
        except RuntimeError:  # already set in this process
            pass


def timed_together(fns, repeats, warmup=2):
    """Median seconds of each of ``fns`` over ``repeats`` rounds that call them in turn (after
    ``warmup`` rounds), so that a change of machine load affects all of them alike."""
    times = [[] for _ in fns]
    for r in range(warmup + repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                out.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def vkd_config(a):
    from common.config import load_config
    sets = [f"model.arch={a.arch}", f"model.width={a.width}", f"data.height={a.height}", f"data.width={a.width_px}",
            f"data.num_ids={a.batch_ids}", f"data.num_pos={a.pos}", f"runtime.ms_mode={a.ms_mode}",
            f"vkd.num_train_images={a.frames}", f"vkd.num_student_images={a.student_frames}"]
    return load_config(os.path.join(ROOT, "configs", "vkd_student.yaml"), sets)


def bench_vkd_student(name, a, frames, student_idx, pids, num_classes):
    """(step, teacher forward, student forward+backward) seconds of one VKD distillation step
    with backend ``name`` (module docstring)."""
    import backends
    from common.data.video import student_views
    from common.recipes.vkd import _optimizer
    cfg = vkd_config(a)
    B = backends.get(name)
    B.device.set_mode(a.ms_mode)
    B.device.select_device(a.device_target, 0)
    B.device.set_seed(0)
    teacher, student = B.vkd.build_model(cfg, num_classes), B.vkd.build_model(cfg, num_classes)
    B.weights.load_numpy_state(student, B.weights.state_to_numpy(teacher))
    trainer = B.vkd.StudentTrainer(student, teacher, _optimizer(cfg, B, student, cfg["optim"]["lr"]), cfg["vkd"],
                                   a.ms_mode)
    views = student_views(frames, student_idx)
    all_frames, few_frames = frames.reshape(-1, *frames.shape[2:]), views.reshape(-1, *views.shape[2:])
    return timed_together([lambda: trainer.train_step(frames, views, pids),
                           lambda: B.bench.forward_no_grad(teacher.backbone, all_frames, a.ms_mode),
                           lambda: B.bench.forward_backward(student.backbone, few_frames, a.ms_mode)], a.repeats)


def main_vkd_student(a):
    bsz, N, M = a.batch_ids * a.pos, a.frames, a.student_frames
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((bsz, N, 3, a.height, a.width_px)).astype(np.float32)
    student_idx = np.stack([rng.permutation(N)[:M] for _ in range(bsz)]).astype(np.int64)
    pids = np.repeat(np.arange(a.batch_ids), a.pos).astype(np.int64)
    print(f"VKD student step, {a.arch} width {a.width}, {bsz} clips: teacher {N} frames, student {M} frames each, "
          f"{a.height}x{a.width_px}, {a.device_target}")
    rows = [(name, *bench_vkd_student(name, a, frames, student_idx, pids, max(a.batch_ids, 16)))
            for name in a.backends.split(",")]
    print(f"{'backend':<10} {'step_s':>9} {'teacher_fwd_s':>13} {'student_fb_s':>12} {'bare_s':>9} {'ratio':>6}")
    for name, step, t_fwd, s_fb in rows:
        print(f"{name:<10} {step:9.5f} {t_fwd:13.5f} {s_fb:12.5f} {t_fwd + s_fb:9.5f} {step / (t_fwd + s_fb):6.3f}")
    torch_step = dict((r[0], r[1]) for r in rows).get("torch")
    if torch_step is not None and not a.no_data:
        import importlib.util
        spec = importlib.util.spec_from_file_location("data_speed", os.path.join(ROOT, "benchmarks", "data_speed.py"))
        data_speed = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(data_speed)
        # synthetic MARS has <= 3 tracklets an identity: the same B = P*K clips as 2 tracklets of B/2 identities
        shape = ["--quick"] if a.quick else ["--P", str(max(bsz // 2, 1)), "--K", "2", "--frames", str(N)]
        data_speed.main(shape + ["--workers", "0", "--step-seconds", f"{torch_step:.5f}"])
    return 0


def mvd_rows_in_own_processes(a, argv):
    """(backend, step, bare) of each backend, each measured in a fresh process of this script:
    at full size (64 images at 288x144) a framework's heap and pools, kept for speed, leave the
    next framework in the same process short of memory, and the two would share thread pools."""
    rows = []
    for name in a.backends.split(","):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--backends", name, "--row-only"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr[-4000:])
            raise SystemExit(f"train_step.py: the {name} measurement failed (exit {r.returncode})")
        rows.append(tuple(json.loads([x for x in r.stdout.splitlines() if x.startswith("ROW ")][-1][4:])))
    return rows


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="mvd", choices=("mvd", "vkd-student", "kd-reid"))
    p.add_argument("--teachers", type=int, default=3, help="kd-reid: teachers (targets) per batch")
    p.add_argument("--backends", default="torch,mindspore")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--width", type=int, default=64, help="backbone stem width (64 = the real model)")
    p.add_argument("--height", type=int, default=0, help="input height (0: 288 for mvd, 256 for vkd-student and kd-reid)")
    p.add_argument("--width-px", type=int, default=0, help="input width (0: 144 for mvd, 128 for vkd-student and kd-reid)")
    p.add_argument("--batch-ids", type=int, default=8)
    p.add_argument("--pos", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device-target", default="CPU")
    p.add_argument("--ms-mode", default="GRAPH")
    p.add_argument("--frames", type=int, default=8, help="vkd-student: teacher frames per clip N")
    p.add_argument("--student-frames", type=int, default=2, help="vkd-student: student frames per clip M")
    p.add_argument("--no-data", action="store_true", help="vkd-student: skip data_speed's waiting fraction")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of each framework (0: its default)")
    p.add_argument("--quick", action="store_true", help="tiny model and inputs (smoke test)")
    p.add_argument("--row-only", action="store_true", help=argparse.SUPPRESS)  # mvd: one backend's row, as JSON
    a = p.parse_args(argv)
    if a.threads:
        set_threads(a.threads, a.backends.split(","))
    small = a.method in ("vkd-student", "kd-reid")
    a.height = a.height or (256 if small else 288)  # VKD's MARS / MTDA's input; MVD's SYSU-MM01 input
    a.width_px = a.width_px or (128 if small else 144)
    if a.quick:
        a.arch, a.width = "resnet18", 8
        a.height, a.width_px, a.batch_ids, a.pos, a.repeats = 64, 32, 4, 2, 2
        a.frames = min(a.frames, 4)
    if a.method == "vkd-student":
        return main_vkd_student(a)
    if a.method == "kd-reid":
        from train_step_kdreid import main_kd
        return main_kd(a, timed)
    bsz = a.batch_ids * a.pos
    rng = np.random.default_rng(0)
    rgb = rng.standard_normal((bsz, 3, a.height, a.width_px)).astype(np.float32)
    ir = rng.standard_normal((bsz, 3, a.height, a.width_px)).astype(np.float32)
    labels = np.repeat(np.arange(a.batch_ids), a.pos).astype(np.int64)
    print(f"MVD port recipe, {a.arch} width {a.width}, batch {bsz} RGB + {bsz} IR at {a.height}x{a.width_px}, "
          f"{a.device_target}")
    if a.row_only:
        name = a.backends
        print("ROW " + json.dumps([name, *bench_mvd(name, a, rgb, ir, labels, num_classes=max(a.batch_ids, 16))]))
        return 0
    rows = mvd_rows_in_own_processes(a, argv)
    pipe = bench_pipeline(a, n_batches=3 if a.quick else 10)
    print(f"{'backend':<10} {'step_s':>8} {'bare_s':>8} {'ratio':>6} {'model_img/s':>12} {'pipeline_img/s':>15}")
    for name, step, bare in rows:
        print(f"{name:<10} {step:8.4f} {bare:8.4f} {step / bare:6.3f} {2 * bsz / step:12.1f} {pipe:15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
