"""Torch vs MindSpore: one optimizer step of each KD-REID step (source, D-MMD, multi-teacher
KD) and short loss curves, from identical weights and batches (SPEC section 10 ladder).

Networks are tiny (ResNet-50 at width 8, OSNet with channels (8, 64, 64, 64) and one block per
stage, 16-d embeddings); batches are 2 identities x 4 rendered images (common.data.appearance;
the D-MMD and KD targets in the 'dim' / 'warm' dataset styles). After one step the
parameters agree within STEP_ATOL (Adam: the documented sign-flip exceptions, KNOWN_GAPS.md)
and the BatchNorm running statistics, which the train-mode forwards move (the KD student's
source forward included), within TRAIN_MAX_REL of their scale. MindSpore runs PYNATIVE by
default and GRAPH in the slow run; the 20-step curves are slow, a 3-step version is not.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

import backends  # noqa: E402
from common.data.appearance import domain_shift, render  # noqa: E402
from common.transforms import normalize  # noqa: E402
from tests.parity.tolerances import (CURVE_REL, STEP_ATOL, STEP_FLIP_MAX_DIFF_LR, STEP_LOSS_REL,  # noqa: E402
                                     STEP_MAX_FLIPPED_FRACTION, STEP_NOISE_REL, STEP_STRUCTURAL_ZERO_REL,
                                     TRAIN_MAX_REL)

TB, MB = backends.get("torch"), backends.get("mindspore")
NUM_CLASSES, P, K = 4, 2, 4
NETS = {"resnet50": dict(fc_dim=16, width=8), "osnet_x0_25": dict(fc_dim=16, channels=(8, 64, 64, 64), blocks=(1, 1, 1))}
SETTINGS = dict(label_smooth=0.1, margin=0.3, P=P, K=K, global_source_grad=True, lkdt_weight=1.0, lkds_weight=0.0,
                lda_weight=0.0, target_alt="batch", student_source_forward=True)
# the recipes' optimizers: Adam 3e-4 (source, D-MMD) and SGD 0.01 (KD)
ADAM = dict(weight_decay=5e-4, betas=(0.9, 0.99))
SGD = dict(weight_decay=5e-4, momentum=0.9)
MODES = ["PYNATIVE", pytest.param("GRAPH", marks=pytest.mark.slow)]

try:
    ms.device_context.cpu.op_tuning.threads_num(1)
except RuntimeError:
    pass


def batch(step, style="none"):
    """P x K images (identity-major) of identities ``step*P ..``, float32 NCHW, and pids."""
    rng = np.random.default_rng([step, len(style)])
    pids = np.repeat([(P * step + j) % NUM_CLASSES for j in range(P)], K).astype(np.int64)
    imgs = [normalize(domain_shift(render(int(p), i % 2, rng, 64, 32), style, i % 2)) for i, p in enumerate(pids)]
    return np.stack(imgs), pids


def pair(arch, seed=0):
    torch.manual_seed(seed)
    t_net = TB.kdreid.build_net(arch, NUM_CLASSES, **NETS[arch])
    m_net = MB.kdreid.build_net(arch, NUM_CLASSES, **NETS[arch])
    MB.weights.load_numpy_state(m_net, TB.weights.state_to_numpy(t_net))
    return t_net, m_net


def trainers(kind, ms_mode, opt, lr, settings=None, arch="resnet50", teacher="resnet50"):
    """(torch trainer, MindSpore trainer, torch net, MindSpore net, step(i, trainer)); ``arch``
    is the network of source / D-MMD (KD: the student is always the tiny OSNet), ``teacher``
    the KD teacher's."""
    s = dict(SETTINGS, **(settings or {}))
    kwargs = dict(ADAM if opt == "adam" else SGD, lr=lr)
    if kind == "kd":
        (t_net, m_net), (tt, mt) = pair("osnet_x0_25"), pair(teacher, seed=1)
        t_tr, m_tr = [B.kdreid.KDTrainer(net, [tch], B.optim.build_optimizer(net, opt, **kwargs), s, ms_mode)
                      for B, net, tch in ((TB, t_net, tt), (MB, m_net, mt))]

        def step(i, tr):
            src, pids = batch(i)
            return tr.train_step(src, pids, batch(i, "warm")[0], 0)
        return t_tr, m_tr, t_net, m_net, step
    t_net, m_net = pair(arch)
    cls = "SourceTrainer" if kind == "source" else "DMMDTrainer"
    t_tr, m_tr = [getattr(B.kdreid, cls)(net, B.optim.build_optimizer(net, opt, **kwargs), s, ms_mode)
                  for B, net in ((TB, t_net), (MB, m_net))]

    def step(i, tr):
        src, pids = batch(i)
        return tr.train_step(src, pids) if kind == "source" else tr.train_step(src, pids, batch(i, "dim")[0], True)
    return t_tr, m_tr, t_net, m_net, step


ONE_STEP = [  # (id, kind, network of source / D-MMD, optimizer, learning rate, settings)
    ("source_resnet50", "source", "resnet50", "adam", 3e-4, None),
    # D-MMD on the tiny OSNet: through the width-8 ResNet-50 the MMD gradients reach 5e2 and the
    # two frameworks' differ by up to 5e-3 of that (KNOWN_GAPS.md "KD-REID D-MMD step")
    ("dmmd_osnet", "dmmd", "osnet_x0_25", "adam", 3e-4, None),
    ("kd", "kd", None, "sgd", 0.01, None),
    ("kd_lda_lkds", "kd", None, "sgd", 0.01, dict(lda_weight=50.0, lkds_weight=0.5)),
]


@pytest.mark.parametrize("ms_mode", MODES, indirect=True)
@pytest.mark.parametrize("kind,arch,opt,lr,settings", [c[1:] for c in ONE_STEP], ids=[c[0] for c in ONE_STEP])
def test_one_step_matches(kind, arch, opt, lr, settings, ms_mode):
    t_tr, m_tr, t_net, m_net, step = trainers(kind, ms_mode, opt, lr, settings, arch=arch or "resnet50")
    before = TB.weights.state_to_numpy(t_net)
    t_loss, m_loss = step(0, t_tr), step(0, m_tr)
    for name in t_loss:
        assert m_loss[name] == pytest.approx(t_loss[name], rel=STEP_LOSS_REL, abs=1e-7), name
    assert t_loss["total"] > 0
    t_after, m_after = TB.weights.state_to_numpy(t_net), MB.weights.state_to_numpy(m_net)
    params = dict(t_net.named_parameters())
    wd = ADAM["weight_decay"]
    grads = {n: np.abs(p.grad.numpy()) for n, p in params.items() if p.grad is not None}
    largest = max(float(g.max()) for g in grads.values())
    moved, flipped, total, worst, stats = 0.0, 0, 0, 0.0, 0
    for name, value in t_after.items():
        diff = np.abs(value - m_after[name])
        if name not in params:  # BN running statistics, moved by train-mode forwards
            assert np.abs(value - before[name]).max() > 0, f"{name}: running statistic did not move"
            assert diff.max() <= TRAIN_MAX_REL * max(np.abs(value).max(), 1e-3), name
            stats += 1
            continue
        moved = max(moved, float(np.abs(value - before[name]).max()))
        if opt == "adam" and grads[name].max() < STEP_STRUCTURAL_ZERO_REL * largest:  # float noise only
            assert (diff <= STEP_FLIP_MAX_DIFF_LR * lr).all(), f"{name}: differs by more than 2 * lr"
            continue
        total += diff.size
        over = diff > STEP_ATOL
        if opt == "adam" and over.any():
            grad = np.abs(params[name].grad.numpy() + wd * before[name])
            assert (grad[over] < STEP_NOISE_REL * grad.max()).all(), f"{name}: a large-gradient element differs"
            assert (diff[over] <= STEP_FLIP_MAX_DIFF_LR * lr).all(), f"{name}: differs by more than 2 * lr"
            flipped += int(over.sum())
            diff = diff[~over]
        if diff.size:
            worst = max(worst, float(diff.max()))
    assert stats > 0 and moved > (0.9 * lr if opt == "adam" else 10 * STEP_ATOL)  # it really stepped
    assert flipped <= STEP_MAX_FLIPPED_FRACTION * total, f"{flipped} of {total} elements flipped"
    assert worst <= STEP_ATOL, f"{kind}/{ms_mode}: parameters differ by {worst:.3g} after one step"


# Loss curves: Adam at 2e-5 on the tiny OSNet (KD: OSNet student, ResNet-50 teacher). Measured
# (torch run from weights perturbed by 1e-6 relative vs unperturbed, 20 steps): <= 4e-3 for the
# three steps, so the set-up is not chaotic at the CURVE_REL scale; SGD (gradients up to 5e2
# through the train-mode BN chain) and the width-8 ResNet-50 as source / D-MMD network are
# (1e-1 .. 1e0): KNOWN_GAPS.md "KD-REID loss curves".
CURVE_LR = 2e-5


def _curves(kind, ms_mode, steps):
    t_tr, m_tr, *_, step = trainers(kind, ms_mode, "adam", CURVE_LR, arch="osnet_x0_25")
    t_curve = np.array([step(i % 4, t_tr)["total"] for i in range(steps)])
    m_curve = np.array([step(i % 4, m_tr)["total"] for i in range(steps)])
    return t_curve, m_curve, np.abs(m_curve - t_curve) / np.abs(t_curve)


@pytest.mark.parametrize("ms_mode", ["PYNATIVE"], indirect=True)
@pytest.mark.parametrize("kind", ["source", "dmmd", "kd"])
def test_three_step_loss_curves_agree(kind, ms_mode):
    _, _, rel = _curves(kind, ms_mode, 3)
    assert rel.max() <= CURVE_REL, f"{kind}: loss curves differ by {rel.max():.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("ms_mode", ["PYNATIVE"], indirect=True)
@pytest.mark.parametrize("kind", ["source", "dmmd", "kd"])
def test_twenty_step_loss_curves_agree(kind, ms_mode):
    t_curve, m_curve, rel = _curves(kind, ms_mode, 20)
    assert t_curve[-4:].mean() < 0.95 * t_curve[:4].mean()  # it trains
    assert rel.max() <= CURVE_REL, f"{kind}: loss curves differ by {rel.max():.3g}; torch {t_curve}, ms {m_curve}"
