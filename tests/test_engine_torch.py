"""PyTorch engine, optimizer and checkpoints (SPEC sections 8, 9, 11; engine contract)."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.torch import checkpoint, engine, optim  # noqa: E402
from backends.torch.mvd import MVDNet  # noqa: E402
from common.errors import CheckpointError, DeviceError  # noqa: E402
from backends.torch.device import select_device, set_mode  # noqa: E402

TINY = dict(depth=18, width=8, z_dim=16, ib_hidden=(32, 16), cls_hidden=16, dropout=0.0)
EXTRA = {"epoch": 3, "best_rank1": 0.625, "config": {"lr": 3.5e-4}, "rng": [1, 2, 3]}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Two torch threads on a small shared machine are ~50x slower than one (contention)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _model(seed=0, num_classes=4):
    torch.manual_seed(seed)
    return MVDNet(num_classes, **TINY)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    ir = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    return rgb, ir, np.array([0, 0, 1, 1], np.int64)


def _params(model):
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


def numpy_adam(w, grad, steps, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam by hand (constant gradient ``grad``)."""
    m = np.zeros_like(w, dtype=np.float64)
    v = np.zeros_like(w, dtype=np.float64)
    w = w.astype(np.float64)
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


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(3, 2, bias=False)
        self.head = torch.nn.Linear(2, 1, bias=False)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_follows_hand_formulas_with_group_lrs(name):
    net = _Tiny()
    w_b, w_h = net.backbone.weight.detach().numpy().copy(), net.head.weight.detach().numpy().copy()
    # tiny gradient entries make the placement of eps matter (torch adds it after bias correction)
    c_b = np.array([[0.5, -2.0, 1e-8], [3e-9, 1.0, -0.25]], np.float32)
    c_h = np.array([[0.3, -0.7]], np.float32)
    wd = 0.0 if name == "adam" else 0.01
    opt = optim.build_optimizer(net, name, lr=0.01, weight_decay=wd, momentum=0.9, head_lr_mult=10.0)
    for _ in range(3):
        opt.zero_grad()
        loss = (net.backbone.weight * torch.from_numpy(c_b)).sum() + (net.head.weight * torch.from_numpy(c_h)).sum()
        loss.backward()
        opt.step()
    ref = numpy_adam if name == "adam" else numpy_sgd
    np.testing.assert_allclose(net.backbone.weight.detach().numpy(), ref(w_b, c_b, 3, 0.01, wd), atol=1e-6)
    np.testing.assert_allclose(net.head.weight.detach().numpy(), ref(w_h, c_h, 3, 0.1, wd), atol=1e-6)


def test_groups_backbone_first_frozen_excluded_and_lrs():
    model = _model()
    opt = optim.build_optimizer(model, "adam", lr=1e-3, weight_decay=5e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    group_names = [[names[id(p)] for p in g["params"]] for g in opt.param_groups]
    assert len(group_names) == 2
    assert group_names[0] and all(".backbone." in n for n in group_names[0])
    assert group_names[1] and not any(".backbone." in n for n in group_names[1])
    assert "visible.neck.bottleneck.bias" not in group_names[1]  # frozen BNNeck bias
    assert "visible.neck.classifier.weight" in group_names[1]
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(group_names[0]) + len(group_names[1]) == trainable
    assert optim.get_group_lrs(opt) == pytest.approx([1e-3, 1e-2])
    g = opt.param_groups[0]
    assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 and g["weight_decay"] == 5e-4
    optim.set_group_lrs(opt, [2e-3, 7e-3])
    assert optim.get_group_lrs(opt) == pytest.approx([2e-3, 7e-3])
    with pytest.raises(ValueError, match="2 learning rates"):
        optim.set_group_lrs(opt, [1e-3])
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.build_optimizer(model, "adamw")
    sgd = optim.build_optimizer(model, "sgd", lr=0.1, momentum=0.9)
    assert sgd.param_groups[1]["lr"] == pytest.approx(1.0)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"] is False


def test_train_step_lowers_loss_and_set_group_lrs_takes_effect():
    model = _model()
    trainer = engine.MVDTrainer(model, optim.build_optimizer(model, "adam", lr=1e-3), {"loss_func": "id+tri+kldiv"})
    rgb, ir, labels = _batch()
    losses = [trainer.train_step(rgb, ir, labels) for _ in range(4)]
    assert set(losses[0]) == {"total", "id", "tri", "kl"}
    assert all(np.isfinite(list(d.values())).all() for d in losses)
    assert losses[-1]["total"] < 0.8 * losses[0]["total"]
    assert losses[0]["total"] == pytest.approx(losses[0]["id"] + losses[0]["tri"] + losses[0]["kl"], rel=1e-5)
    # lr 0 for the backbone: backbone parameters must not move, heads must
    optim.set_group_lrs(trainer.optimizer, [0.0, 1e-3])
    before = _params(model)
    trainer.train_step(rgb, ir, labels)
    after = _params(model)
    assert all(np.array_equal(before[n], after[n]) for n in before if ".backbone." in n)
    assert not np.array_equal(before["shared.ib.net.0.weight"], after["shared.ib.net.0.weight"])


def test_checkpoint_round_trip_is_atomic_and_complete(tmp_path):
    model = _model(0)
    opt = optim.build_optimizer(model, "adam", lr=1e-3)
    trainer = engine.MVDTrainer(model, opt, {})
    trainer.train_step(*_batch())
    path = tmp_path / "last.pth"
    checkpoint.save_checkpoint(str(path), model, opt, EXTRA)
    assert os.listdir(tmp_path) == ["last.pth"]  # no temporary file left behind
    fresh = _model(1)
    fresh_opt = optim.build_optimizer(fresh, "adam", lr=5.0)
    extra = checkpoint.load_checkpoint(str(path), fresh, fresh_opt)
    assert extra == EXTRA
    for (n, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), n
    assert optim.get_group_lrs(fresh_opt) == pytest.approx([1e-3, 1e-2])
    sa, sb = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)


def test_resume_gives_the_same_next_step(tmp_path):
    b1, b2 = _batch(1), _batch(2)
    model = _model(0)
    trainer = engine.MVDTrainer(model, optim.build_optimizer(model, "adam", lr=1e-3), {"loss_func": "id+tri+kldiv"})
    trainer.train_step(*b1)
    checkpoint.save_checkpoint(str(tmp_path / "k.pth"), model, trainer.optimizer, {"step": 1})
    continued = trainer.train_step(*b2)
    fresh = _model(5)
    resumed_trainer = engine.MVDTrainer(fresh, optim.build_optimizer(fresh, "adam", lr=1e-3), {"loss_func": "id+tri+kldiv"})
    assert checkpoint.load_checkpoint(str(tmp_path / "k.pth"), fresh, resumed_trainer.optimizer) == {"step": 1}
    resumed = resumed_trainer.train_step(*b2)
    assert resumed == pytest.approx(continued, rel=1e-6, abs=1e-7)
    a, b = _params(model), _params(fresh)
    for n in a:
        np.testing.assert_allclose(b[n], a[n], rtol=0, atol=1e-6, err_msg=n)


def test_safetensors_round_trip_loads_weights_only(tmp_path):
    model = _model(0)
    path = str(tmp_path / "w.safetensors")
    checkpoint.save_safetensors(path, model, {"epoch": 7})
    fresh = _model(3)
    with pytest.warns(UserWarning, match="no optimizer state"):
        assert checkpoint.load_checkpoint(path, fresh, optim.build_optimizer(fresh)) == {"epoch": 7}
    a, b = _params(model), _params(fresh)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert torch.equal(model.shared.neck.bottleneck.running_var, fresh.shared.neck.bottleneck.running_var)


def test_checkpoint_errors_name_the_problem(tmp_path):
    model = _model()
    with pytest.raises(CheckpointError, match="missing.pth"):
        checkpoint.load_checkpoint(str(tmp_path / "missing.pth"), model)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        checkpoint.load_checkpoint(str(corrupt), model)
    path = str(tmp_path / "four.pth")
    checkpoint.save_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="classifier"):
        checkpoint.load_checkpoint(path, _model(num_classes=5))
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.save_checkpoint(str(tmp_path / "bad.pth"), model, extra={"x": object()})
    assert sorted(os.listdir(tmp_path)) == ["corrupt.pth", "four.pth"]


def test_mindspore_checkpoint_is_refused_with_the_conversion_command(tmp_path):
    pytest.importorskip("mindspore")
    from backends.mindspore.checkpoint import write_file
    path = str(tmp_path / "ms.ckpt")
    write_file(path, {"w": np.ones((2, 2), np.float32)}, {})
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_checkpoint(path, _model())
    msg = str(err.value)
    assert "is a mindspore checkpoint" in msg and f"python -m tools.convert_weights {path} " in msg


def test_extract_is_eval_mode_normalised_and_restores_mode():
    model = _model()
    model.train()
    images = np.random.default_rng(0).standard_normal((5, 3, 64, 32)).astype(np.float32)
    feats = engine.extract(model, images, "infrared", batch_size=2)
    assert feats.shape == (5, 2 * model.feat_dim)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert model.training
    model.eval()
    with torch.no_grad():
        ref = model.extract(torch.from_numpy(images[3:4]), "infrared").numpy()
    np.testing.assert_allclose(feats[3:4], ref, rtol=1e-5, atol=1e-6)  # batch-independent: eval BN


def test_forward_backward_backbone_touches_one_backbone_only():
    model = _model()
    engine.forward_backward_backbone(model, np.ones((2, 3, 64, 32), np.float32))
    assert model.visible.backbone.conv1.weight.grad is not None
    assert model.shared.backbone.conv1.weight.grad is None


def test_device_selection_and_mode():
    assert select_device("CPU").type == "cpu"
    with pytest.raises(DeviceError, match="TPU"):
        select_device("TPU")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            select_device("GPU", 0)
    set_mode("GRAPH")
    with pytest.raises(ValueError):
        set_mode("EAGER")
