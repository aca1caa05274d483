"""Each backend's training step, optimizer groups, checkpoints and extraction, one test body
for both backends (the ``backend`` fixture)."""
import glob
import os

import numpy as np
import pytest

from common.config import load_config
from common.errors import CheckpointError, DeviceError
from common.recipes import mvd as mvd_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model.arch=resnet18", "model.width=8", "mvd.z_dim=16", "mvd.ib_hidden=[32,16]", "mvd.cls_hidden=16",
        "mvd.dropout=0.0", "runtime.ms_mode=PYNATIVE"]
EXTRA = {"epoch": 3, "best_rank1": 0.625, "config": {"lr": 3.5e-4}, "rng": [1, 2, 3]}
EXT = {"torch": ".pth", "mindspore": ".ckpt"}


def _cfg(recipe="mvd_port", extra=()):
    return load_config(f"configs/{recipe}.yaml", TINY + list(extra))


def _model(B, seed=0, num_classes=4, recipe="mvd_port", extra=()):
    B.device.set_seed(seed)
    cfg = _cfg(recipe, extra)
    return cfg, B.mvd.build_model(cfg, num_classes)


def _trainer(B, cfg, model, lr=1e-3):
    cfg = dict(cfg, optim=dict(cfg["optim"], lr=lr))
    return B.mvd.MVDTrainer(model, mvd_recipe.build_optimizer(cfg, B, model), cfg["mvd"], "PYNATIVE")


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    ir = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    return rgb, ir, np.array([0, 0, 1, 1], np.int64)


@pytest.mark.parametrize("recipe, terms", [("mvd_routed", {"total", "id", "tri", "kl"})])
def test_train_step_lowers_loss_and_group_lrs_take_effect(B, recipe, terms):
    cfg, model = _model(B, recipe=recipe, extra=["mvd.loss_func=id+tri+kldiv"])
    trainer = _trainer(B, cfg, model)
    batch = _batch()
    losses = [trainer.train_step(*batch) for _ in range(4)]
    assert set(losses[0]) == terms and all(np.isfinite(list(d.values())).all() for d in losses)
    assert losses[-1]["total"] < 0.9 * losses[0]["total"]
    assert losses[0]["total"] == pytest.approx(sum(v for k, v in losses[0].items() if k != "total"), rel=1e-5)
    B.optim.set_group_lrs(trainer.optimizer, [0.0, 1e-3])  # backbone group frozen by its rate
    before = B.weights.state_to_numpy(model)
    trainer.train_step(*batch)
    after = B.weights.state_to_numpy(model)
    assert all(np.array_equal(before[n], after[n]) for n in before if ".backbone." in n and "running" not in n)
    assert not np.array_equal(before["shared.ib.net.0.weight"], after["shared.ib.net.0.weight"])


def test_parameter_groups_follow_backbone_modules(B):
    _, model = _model(B)
    port = B.optim.split_groups(model, ("backbone", "neck"))
    plain = B.optim.split_groups(model, ("backbone",))
    assert len(port[0]) == len(plain[0]) + 3 * 4  # per encoder: BN weight, BN shift (trainable), classifier w, b
    cfg, frozen = _model(B, extra=["mvd.neck_bias=frozen"])
    assert len(B.optim.split_groups(frozen, ("backbone", "neck"))[0]) == len(port[0]) - 3
    opt = mvd_recipe.build_optimizer(_cfg(), B, model)
    assert B.optim.get_group_lrs(opt) == pytest.approx([3.5e-5, 3.5e-4])  # the port's 0.1 x lr for backbones
    with pytest.raises(ValueError, match="2 learning rates"):
        B.optim.set_group_lrs(opt, [1e-3])
    with pytest.raises(ValueError, match="unknown optimizer"):
        B.optim.build_optimizer(model, "adamw")


def test_nonfinite_step_leaves_parameters_and_optimizer_untouched(B):
    cfg, model = _model(B, recipe="mvd_routed")
    trainer = _trainer(B, cfg, model)
    trainer.train_step(*_batch())
    before = B.weights.state_to_numpy(model)
    rgb, ir, y = _batch(1)
    rgb[0] = np.nan  # MindSpore's CPU ReLU maps NaN to 0, so its loss may stay finite: its gradient is not
    parts = trainer.train_step(rgb, ir, y)
    assert not np.isfinite(list(parts.values())).all()
    after = B.weights.state_to_numpy(model)
    assert all(np.array_equal(before[n], after[n]) for n in before if "running" not in n and "moving" not in n)
    parts = trainer.train_step(*_batch(2))  # a finite batch updates again
    assert np.isfinite(parts["total"])
    assert not np.array_equal(B.weights.state_to_numpy(model)["shared.ib.net.0.weight"], before["shared.ib.net.0.weight"])


def test_checkpoint_round_trip_is_atomic_and_resume_gives_the_same_next_step(B, tmp_path):
    cfg, model = _model(B, 0, recipe="mvd_routed")
    trainer = _trainer(B, cfg, model)
    trainer.train_step(*_batch(1))
    path = str(tmp_path / f"last{EXT[B.name]}")
    B.checkpoint.save_checkpoint(path, model, trainer.optimizer, EXTRA)
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())
    continued = trainer.train_step(*_batch(2))
    _, fresh = _model(B, 5, recipe="mvd_routed")
    fresh_trainer = _trainer(B, cfg, fresh, lr=5.0)
    assert B.checkpoint.load_checkpoint(path, fresh, fresh_trainer.optimizer) == EXTRA
    assert B.optim.get_group_lrs(fresh_trainer.optimizer) == pytest.approx([1e-3, 1e-2])
    resumed = fresh_trainer.train_step(*_batch(2))
    assert resumed == pytest.approx(continued, rel=1e-6, abs=1e-7)
    a, b = B.weights.state_to_numpy(model), B.weights.state_to_numpy(fresh)
    assert max(float(np.abs(a[n] - b[n]).max()) for n in a) <= 1e-6


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_safetensors_round_trip_loads_weights_only(B, tmp_path):
    cfg, model = _model(B, 0)
    path = str(tmp_path / "w.safetensors")
    B.checkpoint.save_safetensors(path, model, {"epoch": 7})
    _, fresh = _model(B, 3)
    with pytest.warns(UserWarning, match="no optimizer state"):
        assert B.checkpoint.load_checkpoint(path, fresh, mvd_recipe.build_optimizer(cfg, B, fresh)) == {"epoch": 7}
    a, b = B.weights.state_to_numpy(model), B.weights.state_to_numpy(fresh)
    assert all(np.array_equal(a[n], b[n]) for n in a)


def test_checkpoint_errors_name_the_problem(B, tmp_path):
    _, model = _model(B)
    ext = EXT[B.name]
    with pytest.raises(CheckpointError, match="missing"):
        B.checkpoint.load_checkpoint(str(tmp_path / f"missing{ext}"), model)
    corrupt = tmp_path / f"corrupt{ext}"
    corrupt.write_bytes(b"PK\x03\x04 not a zip" if B.name == "torch" else b"\x0a\x05garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        B.checkpoint.load_checkpoint(str(corrupt), model)
    path = str(tmp_path / f"four{ext}")
    B.checkpoint.save_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="classifier"):
        B.checkpoint.load_checkpoint(path, _model(B, num_classes=5)[1])
    with pytest.raises(CheckpointError, match="JSON"):
        B.checkpoint.save_checkpoint(str(tmp_path / f"bad{ext}"), model, extra={"x": object()})
    assert not glob.glob(str(tmp_path / "*.tmp*")) and not (tmp_path / f"bad{ext}").exists()


@pytest.mark.parametrize("name", ["same-name", "swapped-suffix"])
def test_the_other_backends_file_gets_a_conversion_command_that_works(B, tmp_path, name):
    """A file is recognised by its content whatever its suffix, and the suggested command's
    output differs from its input."""
    import backends
    other = backends.get("mindspore" if B.name == "torch" else "torch")
    pytest.importorskip(other.name)
    other.device.set_mode("PYNATIVE")
    _, theirs = _model(other)
    suffix = EXT[other.name] if name == "same-name" else EXT[B.name]
    path = str(tmp_path / f"theirs{suffix}")
    if other.name == "mindspore" and suffix != ".ckpt":
        other.checkpoint.write_file(str(tmp_path / "x.ckpt"), other.weights.state_to_numpy(theirs), {})
        os.replace(tmp_path / "x.ckpt", path)
    else:
        other.checkpoint.save_checkpoint(path, theirs)
    assert other.checkpoint.read_extra(path) is not None  # the other backend reads it, any suffix
    with pytest.raises(CheckpointError) as err:
        B.checkpoint.load_checkpoint(path, _model(B)[1])
    msg = str(err.value)
    assert f"is a {other.name} checkpoint" in msg and "python -m tools.convert_weights" in msg
    out = msg.split("tools.convert_weights ", 1)[1].split()[1]
    assert os.path.abspath(out) != os.path.abspath(path)
    from tools import convert_weights
    assert convert_weights.main([path, out]) == 0
    B.checkpoint.load_checkpoint(out, _model(B)[1])


def test_extract_is_eval_mode_and_restores_the_mode(B):
    _, model = _model(B)
    train_mode = (lambda: model.training)
    (model.train() if B.name == "torch" else model.set_train(True))
    images = np.random.default_rng(0).standard_normal((5, 3, 64, 32)).astype(np.float32)
    feats = B.mvd.extract(model, images, "infrared", batch_size=2)
    assert feats.shape == (5, 4 * model.feat_dim)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 2.0, rtol=1e-5)  # four parts of norm 1
    assert train_mode()
    single = B.mvd.extract(model, images[3:4], "infrared")
    np.testing.assert_allclose(feats[3:4], single, rtol=1e-5, atol=1e-6)  # batch-independent: eval BN


def test_device_selection(B):
    B.device.select_device("CPU", 0)
    with pytest.raises(DeviceError, match="TPU"):
        B.device.select_device("TPU")
    with pytest.raises(ValueError):
        B.device.set_mode("EAGER")
