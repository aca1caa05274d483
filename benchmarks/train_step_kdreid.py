"""``benchmarks/train_step.py --method kd-reid`` (see its docstring): one batch of KD-REID's
batch engine against the network work it cannot avoid, in both backends. Kept in its own file;
``train_step.py`` dispatches here and passes its ``timed`` (median of repeats after warm-up)."""
import numpy as np


def bench_kd(name, a, src, pids, targets, timed):
    """(step seconds, bare seconds) of one batch-engine batch of ``kd-reid`` with ``name``."""
    import backends
    B = backends.get(name)
    B.device.set_mode(a.ms_mode)
    B.device.select_device(a.device_target, 0)
    B.device.set_seed(0)
    fc = 16 if a.quick else 2048
    student_kw = dict(fc_dim=fc, channels=(8, 64, 64, 64), blocks=(1, 1, 1)) if a.quick else dict(fc_dim=fc)
    student = B.kdreid.build_net("osnet_x0_25", 16, **student_kw)
    teachers = [B.kdreid.build_net("resnet50", 16, fc_dim=fc, width=a.width) for _ in targets]
    settings = dict(label_smooth=0.1, margin=0.3, P=a.batch_ids, K=a.pos, global_source_grad=True, lkdt_weight=1.0,
                    lkds_weight=0.0, lda_weight=0.0, target_alt="batch", student_source_forward=True)
    optimizer = B.optim.build_optimizer(student, "sgd", 0.01, 5e-4, 0.9, backbone_modules=())
    trainer = B.kdreid.KDTrainer(student, teachers, optimizer, settings, a.ms_mode)

    def step():
        for t, tgt in enumerate(targets):
            trainer.train_step(src, pids, tgt, t)

    def bare():
        for teacher, tgt in zip(teachers, targets):
            B.bench.forward_no_grad(teacher, tgt, a.ms_mode)
            B.bench.forward_no_grad(student, src, a.ms_mode)
            B.bench.forward_backward(student, tgt, a.ms_mode, output=1)
    return timed(step, a.repeats), timed(bare, a.repeats)


def main_kd(a, timed):
    bsz = a.batch_ids * a.pos
    rng = np.random.default_rng(0)
    src = rng.standard_normal((bsz, 3, a.height, a.width_px)).astype(np.float32)
    targets = [rng.standard_normal((bsz, 3, a.height, a.width_px)).astype(np.float32) for _ in range(a.teachers)]
    pids = np.repeat(np.arange(a.batch_ids), a.pos).astype(np.int64)
    print(f"KD-REID batch engine: osnet_x0_25 student, {a.teachers} resnet50 teachers (width {a.width}), "
          f"{a.batch_ids} x {a.pos} images per batch at {a.height}x{a.width_px}, {a.device_target}")
    rows = [(name, *bench_kd(name, a, src, pids, targets, timed)) for name in a.backends.split(",")]
    print(f"{'backend':<10} {'step_s':>8} {'bare_s':>8} {'ratio':>6} {'student_steps/s':>16}")
    for name, step, bare in rows:
        print(f"{name:<10} {step:8.4f} {bare:8.4f} {step / bare:6.3f} {a.teachers / step:16.2f}")
    return 0
