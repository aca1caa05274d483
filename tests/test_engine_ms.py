"""MindSpore engine, optimizer and checkpoints (SPEC sections 1, 8, 9, 11; engine contract).

Training steps of the tiny MVDNet take a few seconds in PYNATIVE mode and about half a
minute of compilation in GRAPH mode on a 2-core machine, so those tests are marked slow.
"""
import os

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from backends.mindspore import checkpoint, engine, optim  # noqa: E402
from backends.mindspore.device import select_device, set_mode  # noqa: E402
from backends.mindspore.mvd import MVDNet  # noqa: E402
from common.errors import CheckpointError, DeviceError  # noqa: E402

try:  # 25 CPU kernel threads by default: far too many on a small shared machine
    ms.device_context.cpu.op_tuning.threads_num(1)
except RuntimeError:  # already fixed by an earlier module of this process
    pass


TINY = dict(depth=18, width=8, z_dim=16, ib_hidden=(32, 16), cls_hidden=16, dropout=0.0)
EXTRA = {"epoch": 3, "best_rank1": 0.625, "config": {"lr": 3.5e-4}, "rng": [1, 2, 3]}


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    ir = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    return rgb, ir, np.array([0, 0, 1, 1], np.int64)


def numpy_adam(w, grad, steps, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam by hand (constant gradient ``grad``; eps after bias correction)."""
    m, v, w = np.zeros(w.shape), np.zeros(w.shape), w.astype(np.float64)
    for t in range(1, steps + 1):
        g = grad + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
    return w


def numpy_sgd(w, grad, steps, lr, wd, mu=0.9):
    """torch.optim.SGD with momentum by hand (buffer starts as the first gradient)."""
    w, buf = w.astype(np.float64), None
    for _ in range(steps):
        g = grad + wd * w
        buf = g if buf is None else mu * buf + g
        w = w - lr * buf
    return w


def _model(seed=0, num_classes=4):
    ms.set_seed(seed)
    np.random.seed(seed)
    return MVDNet(num_classes, **TINY)


def _params(model):
    return {p.name: p.asnumpy().copy() for p in model.get_parameters()}


class _Tiny(ms.nn.Cell):
    def __init__(self):
        super().__init__()
        self.backbone = ms.nn.Dense(3, 2, has_bias=False)
        self.head = ms.nn.Dense(2, 1, has_bias=False)


def _run_tiny(name, use_jit, steps=3):
    net = _Tiny()
    rng = np.random.default_rng(0)
    w_b, w_h = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((1, 2)).astype(np.float32)
    net.backbone.weight.set_data(ms.Tensor(w_b))
    net.head.weight.set_data(ms.Tensor(w_h))
    c_b = np.array([[0.5, -2.0, 1e-8], [3e-9, 1.0, -0.25]], np.float32)
    c_h = np.array([[0.3, -0.7]], np.float32)
    wd = 0.0 if name == "adam" else 0.01
    opt = optim.build_optimizer(net, name, lr=0.01, weight_decay=wd, momentum=0.9, head_lr_mult=10.0)
    cb, ch = ms.Tensor(c_b), ms.Tensor(c_h)

    def loss_fn():
        return (net.backbone.weight * cb).sum() + (net.head.weight * ch).sum()
    grad_fn = ms.value_and_grad(loss_fn, None, opt.parameters)

    def step():
        loss, grads = grad_fn()
        opt(grads)
        return loss
    step = ms.jit(step) if use_jit else step
    for _ in range(steps):
        step()
    ref = numpy_adam if name == "adam" else numpy_sgd
    np.testing.assert_allclose(net.backbone.weight.asnumpy(), ref(w_b, c_b, steps, 0.01, wd), atol=1e-6)
    np.testing.assert_allclose(net.head.weight.asnumpy(), ref(w_h, c_h, steps, 0.1, wd), atol=1e-6)
    return net, opt, step


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_follows_torch_formulas(name, use_jit):
    _run_tiny(name, use_jit)


def test_set_group_lrs_reaches_a_compiled_step():
    net, opt, step = _run_tiny("sgd", use_jit=True)
    optim.set_group_lrs(opt, [0.0, 0.0])
    assert optim.get_group_lrs(opt) == [0.0, 0.0]
    before = net.head.weight.asnumpy().copy()
    step()  # lr 0: the (already compiled) step must not move the weights
    np.testing.assert_array_equal(net.head.weight.asnumpy(), before)
    optim.set_group_lrs(opt, [0.0, 1.0])
    step()
    assert not np.array_equal(net.head.weight.asnumpy(), before)


def test_groups_backbone_first_frozen_excluded_and_lrs():
    model = _model()
    opt = optim.build_optimizer(model, "adam", lr=1e-3, weight_decay=5e-4)
    names = [p.name for p in opt.parameters]
    start, end = opt.bounds[1]
    backbone, heads = names[:start], names[start:end]
    assert backbone and all(".backbone." in n for n in backbone)
    assert heads and not any(".backbone." in n for n in heads)
    assert "visible.neck.bottleneck.beta" not in heads  # frozen BNNeck bias
    assert "visible.neck.classifier.weight" in heads
    assert len(names) == len(model.trainable_params())
    assert optim.get_group_lrs(opt) == pytest.approx([1e-3, 1e-2])
    optim.set_group_lrs(opt, [2e-3, 7e-3])
    assert optim.get_group_lrs(opt) == pytest.approx([2e-3, 7e-3])
    with pytest.raises(ValueError, match="2 learning rates"):
        optim.set_group_lrs(opt, [1e-3])
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.build_optimizer(model, "adamw")


def test_checkpoint_round_trip_is_atomic_and_complete(tmp_path):
    model = _model(0)
    opt = optim.build_optimizer(model, "adam", lr=1e-3)
    state = opt.state_arrays()
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in state.items()}
    opt.load_state_arrays(state)  # stands in for a few training steps
    path = tmp_path / "last.ckpt"
    checkpoint.save_checkpoint(str(path), model, opt, EXTRA)
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind
    fresh = _model(1)
    fresh_opt = optim.build_optimizer(fresh, "adam", lr=5.0)
    assert checkpoint.load_checkpoint(str(path), fresh, fresh_opt) == EXTRA
    a, b = _params(model), _params(fresh)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    restored = fresh_opt.state_arrays()
    assert restored.keys() == state.keys() and all(np.array_equal(restored[k], state[k]) for k in state)
    with pytest.raises(CheckpointError, match="does not fit"):
        checkpoint.load_checkpoint(str(path), _model(2), optim.build_optimizer(_model(2), "sgd"))


def test_safetensors_round_trip_loads_weights_only(tmp_path):
    model = _model(0)
    path = str(tmp_path / "w.safetensors")
    checkpoint.save_safetensors(path, model, {"epoch": 7})
    fresh = _model(3)
    with pytest.warns(UserWarning, match="no optimizer state"):
        assert checkpoint.load_checkpoint(path, fresh, optim.build_optimizer(fresh)) == {"epoch": 7}
    a, b = _params(model), _params(fresh)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_checkpoint_errors_name_the_problem(tmp_path):
    model = _model()
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        checkpoint.load_checkpoint(str(tmp_path / "missing.ckpt"), model)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\n\x05garbage that is not a protobuf")
    with pytest.raises(CheckpointError, match="corrupt.ckpt"):
        checkpoint.load_checkpoint(str(corrupt), model)
    path = str(tmp_path / "four.ckpt")
    checkpoint.save_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="classifier"):
        checkpoint.load_checkpoint(path, _model(num_classes=5))
    with pytest.raises(CheckpointError, match=r"\.ckpt"):
        checkpoint.save_checkpoint(str(tmp_path / "x.pth"), model)
    assert sorted(os.listdir(tmp_path)) == ["corrupt.ckpt", "four.ckpt"]


def test_torch_checkpoint_is_refused_with_the_conversion_command(tmp_path):
    pytest.importorskip("torch")
    from backends.torch.checkpoint import write_file
    path = str(tmp_path / "t.pth")
    write_file(path, {"w": np.ones((2, 2), np.float32)}, {})
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_checkpoint(path, _model())
    msg = str(err.value)
    assert "is a torch checkpoint" in msg and f"python -m tools.convert_weights {path} " in msg


def test_extract_is_eval_mode_normalised_and_restores_mode():
    model = _model()
    model.set_train(True)
    images = np.random.default_rng(0).standard_normal((3, 3, 64, 32)).astype(np.float32)
    feats = engine.extract(model, images, "visible", batch_size=2)
    assert feats.shape == (3, 2 * model.feat_dim)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert model.training
    single = engine.extract(model, images[2:3], "visible")
    np.testing.assert_allclose(feats[2:3], single, rtol=1e-5, atol=1e-6)  # eval BN: batch-independent


def test_device_selection_and_mode():
    assert select_device("CPU") == ("CPU", 0)
    with pytest.raises(DeviceError, match="TPU"):
        select_device("TPU")
    with pytest.raises(DeviceError, match="GPU"):
        select_device("GPU", 0)  # the device is already fixed to CPU in this process
    set_mode("PYNATIVE")
    with pytest.raises(ValueError):
        set_mode("EAGER")


def _train_and_resume(tmp_path, ms_mode):
    cfg = {"loss_func": "id+tri+kldiv"}
    b1, b2 = _batch(1), _batch(2)
    model = _model(0)
    trainer = engine.MVDTrainer(model, optim.build_optimizer(model, "adam", lr=1e-3), cfg, ms_mode=ms_mode)
    first = trainer.train_step(*b1)
    assert set(first) == {"total", "id", "tri", "kl"}
    checkpoint.save_checkpoint(str(tmp_path / "k.ckpt"), model, trainer.optimizer, {"step": 1})
    continued = trainer.train_step(*b2)
    later = [trainer.train_step(*b1) for _ in range(3)]
    assert later[-1]["total"] < first["total"]
    fresh = _model(5)
    fresh_opt = optim.build_optimizer(fresh, "adam", lr=1e-3)
    assert checkpoint.load_checkpoint(str(tmp_path / "k.ckpt"), fresh, fresh_opt) == {"step": 1}
    resumed = engine.MVDTrainer(fresh, fresh_opt, cfg, ms_mode=ms_mode).train_step(*b2)
    assert resumed == pytest.approx(continued, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_pynative_train_step_lowers_loss_and_resumes(tmp_path):
    _train_and_resume(tmp_path, "PYNATIVE")


@pytest.mark.slow
def test_graph_train_step_lowers_loss_and_resumes(tmp_path):
    _train_and_resume(tmp_path, "GRAPH")


def test_forward_backward_backbone_runs():
    model = _model()
    before = model.visible.backbone.conv1.weight.asnumpy().copy()
    engine.forward_backward_backbone(model, np.ones((2, 3, 64, 32), np.float32), ms_mode="PYNATIVE")
    np.testing.assert_array_equal(model.visible.backbone.conv1.weight.asnumpy(), before)  # no update
