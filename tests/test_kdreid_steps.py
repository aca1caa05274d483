"""What each KD-REID training step does, in both backends (backends/<fw>/kdreid.py): the
classifier-only (fixbase) source step, the D-MMD switch, the frozen teachers, the student's
source forward, the shift measure, and the networks ``build_net`` makes."""
import numpy as np
import pytest

from common.data.appearance import domain_shift, render
from common.transforms import normalize

OSNET = dict(fc_dim=16, channels=(8, 64, 64, 64), blocks=(1, 1, 1))
RESNET = dict(fc_dim=16, width=8)
SETTINGS = dict(label_smooth=0.1, margin=0.3, P=2, K=2, global_source_grad=True, lkdt_weight=1.0,
                lkds_weight=0.0, lda_weight=0.0, target_alt="batch", student_source_forward=True)


def batch(seed, style="none"):
    rng = np.random.default_rng(seed)
    pids = np.array([0, 0, 1, 1], np.int64)
    return np.stack([normalize(domain_shift(render(int(p) + seed, i, rng), style, i)) for i, p in enumerate(pids)]), pids


def opt(B, model, lr=0.01, name="sgd"):
    return B.optim.build_optimizer(model, name, lr, 5e-4, 0.9, backbone_modules=())


def state(B, model):
    return B.weights.state_to_numpy(model)


def changed(a, b):
    return {k for k in a if not np.array_equal(a[k], b[k])}


def test_build_net_sizes(backend):
    os_net = backend.kdreid.build_net("osnet_x0_25", 5, **OSNET)
    assert os_net.channels == (8, 64, 64, 64) and os_net.feat_dim == 16
    assert backend.kdreid.build_net("osnet_x0_25", 5).channels == (16, 64, 96, 128)
    res = backend.kdreid.build_net("resnet50", 5, fc_dim=0, width=8)
    assert res.feat_dim == 256  # width-8 ResNet-50: 8 * 8 * 4 channels, no feat layer
    assert "layer4.0.downsample.0.weight" in state(backend, res)


def test_classifier_only_step_touches_the_classifier_only(backend):
    net = backend.kdreid.build_net("resnet50", 2, **RESNET)
    before = state(backend, net)
    tr = backend.kdreid.SourceTrainer(net, opt(backend, net.classifier, 1e-3, "adam"), SETTINGS, "PYNATIVE",
                                      classifier_only=True)
    out = tr.train_step(*batch(0))
    assert out["ce"] > 0 and out["total"] == pytest.approx(out["ce"] + out["triplet"], rel=1e-6)
    # frozen trunk in eval mode: no weight and no BN running statistic moves
    assert changed(before, state(backend, net)) == {"classifier.weight", "classifier.bias"}
    full = backend.kdreid.SourceTrainer(net, opt(backend, net, 1e-3, "adam"), SETTINGS, "PYNATIVE")
    after_cls = state(backend, net)
    full.train_step(*batch(0))
    moved = changed(after_cls, state(backend, net))
    assert "conv1.weight" in moved and "bn1.running_mean" in moved


def test_dmmd_terms_switch_on(backend):
    net = backend.kdreid.build_net("osnet_x0_25", 2, **OSNET)
    tr = backend.kdreid.DMMDTrainer(net, opt(backend, net, 1e-4, "adam"), SETTINGS, "PYNATIVE")
    src, pids = batch(0)
    tgt = batch(1, "dim")[0]
    off = tr.train_step(src, pids, tgt, False)
    assert off["mmd_wc"] == off["mmd_bc"] == off["mmd_global"] == 0.0
    assert off["total"] == pytest.approx(off["triplet"] + off["ce"], rel=1e-6)
    on = tr.train_step(src, pids, tgt, True)
    assert min(on["mmd_wc"], on["mmd_bc"], on["mmd_global"]) > 0
    assert on["total"] == pytest.approx(sum(on[k] for k in ("triplet", "ce", "mmd_wc", "mmd_bc", "mmd_global")),
                                        rel=1e-5)


def kd_pair(backend, **settings):
    student = backend.kdreid.build_net("osnet_x0_25", 2, **OSNET)
    teachers = [backend.kdreid.build_net("osnet_x0_25", 2, **OSNET) for _ in range(2)]  # the cheapest network
    tr = backend.kdreid.KDTrainer(student, teachers, opt(backend, student), dict(SETTINGS, **settings), "PYNATIVE")
    return student, teachers, tr


def test_kd_step_trains_the_student_only_and_reads_its_teacher(backend):
    student, teachers, tr = kd_pair(backend)
    src, pids = batch(0)
    tgt = batch(1, "warm")[0]
    t_before = [state(backend, t) for t in teachers]
    s_before = state(backend, student)
    out = tr.train_step(src, pids, tgt, 1)
    assert out["total"] == out["kd_target"] > 0 and out["kd_source"] == out["da"] == 0.0
    for t, before in zip(teachers, t_before):
        after = state(backend, t)
        assert all(np.array_equal(before[k], after[k]) for k in before if "running" not in k)  # frozen
    assert "conv1.conv.weight" in changed(s_before, state(backend, student))
    # the loss reads the teacher of the target: teacher 0 gives another value from the same student
    backend.weights.load_numpy_state(student, s_before)
    assert tr.train_step(src, pids, tgt, 0)["total"] != pytest.approx(out["total"], rel=1e-3)


def test_student_source_forward_moves_bn_statistics(backend):
    stats = {}
    for flag in (True, False):
        student, teachers, tr = kd_pair(backend, student_source_forward=flag)
        if flag is False:
            backend.weights.load_numpy_state(student, init)
            for t, s in zip(teachers, t_init):
                backend.weights.load_numpy_state(t, s)
        else:
            init, t_init = state(backend, student), [state(backend, t) for t in teachers]
        tr.train_step(*batch(0), batch(1, "warm")[0], 0)
        stats[flag] = state(backend, student)["feat_bn.running_mean"]
    # the source batch enters the student's running statistics only with the reference's forward
    assert not np.allclose(stats[True], stats[False], rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", ["torch"], indirect=True)  # MindSpore: parity case kd_lda_lkds
def test_kd_lda_and_lkds_terms(backend):
    src, pids = batch(0)
    tgt = batch(1, "warm")[0]
    full = kd_pair(backend, lda_weight=5.0, target_alt="full")[2].train_step(src, pids, tgt, 0)
    student, teachers, tr = kd_pair(backend, lda_weight=5.0, lkds_weight=0.5, target_alt="batch")
    batch_mode = tr.train_step(src, pids, tgt, 0)
    assert full["da"] > 0 and batch_mode["kd_source"] > 0
    assert batch_mode["total"] == pytest.approx(batch_mode["kd_target"] + batch_mode["kd_source"] + batch_mode["da"],
                                                rel=1e-5)
    # full engine: l_da at weight 1; batch engine: lda_weight / 100 (MTDA's two engines)
    assert batch_mode["da"] < full["da"]


def test_measure_shift(backend):
    student, _, tr = kd_pair(backend)
    src = batch(0)[0]
    before = state(backend, student)["feat_bn.running_mean"]
    near = tr.measure_shift(src, batch(0)[0], "global")
    far = tr.measure_shift(src, batch(5, "dim")[0], "global")
    assert near == pytest.approx(0.0, abs=1e-5) and far > near
    assert tr.measure_shift(src, batch(5, "dim")[0], "dmmd") > far  # + within + between terms
    assert not np.array_equal(before, state(backend, student)["feat_bn.running_mean"])  # train-mode forwards
