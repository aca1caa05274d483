"""Checkpoints of the original MVD code (``{'model': ft_net.state_dict(), 'epoch', 'best_top1'}``
saved as ``model_best.pth.tar``) load into the mvd_original network in both backends, through
test.py --resume and tools.convert_weights. The fixture is built from the reference's key
names (reid/models/newresnet.py, baseline.py, utlis.py), not from this project's."""
import numpy as np
import pytest

from common import mvd_import
from common.errors import CheckpointError
from tiny import make_sysu

torch = pytest.importorskip("torch")

Z, H0, H1, CLS, C = 8, 16, 8, 8, 6  # tiny IB sizes, 6 identities
WIDTH = 4
SETS = ["--set", "model.arch=resnet18", "--set", f"model.width={WIDTH}", "--set", f"mvd.z_dim={Z}",
        "--set", f"mvd.ib_hidden=[{H0},{H1}]", "--set", f"mvd.cls_hidden={CLS}", "--set", "data.height=32",
        "--set", "data.width=16", "--set", "data.eval_trials=1", "--ms-mode", "PYNATIVE"]


def original_state(seed=0):
    """An original ft_net state dict by the reference's names, random values (BN statistics
    positive), ResNet-18-shaped backbones at width 4 (this project's tiny ResNet)."""
    from backends.torch.backbones import ResNet
    rng = np.random.default_rng(seed)
    backbone = {k: v for k, v in ResNet(depth=18, width=WIDTH).state_dict().items()}
    feat = 8 * WIDTH
    out = {}
    for ref in ("RGB", "IR", "shared"):
        for k, v in backbone.items():
            out[f"{ref}_backbone.base.{k}"] = v.clone()
        out[f"{ref}_backbone.base.fc.weight"] = torch.zeros(1000, feat)   # unused ImageNet head
        out[f"{ref}_backbone.base.fc.bias"] = torch.zeros(1000)
        for cam in ("cam_256", "cam_512", "cam_1024"):
            out[f"{ref}_backbone.{cam}._cam_module.gamma"] = torch.zeros(1)
        for leaf, shape in (("weight", (feat,)), ("bias", (feat,)), ("running_mean", (feat,)),
                            ("running_var", (feat,))):
            out[f"{ref}_backbone.bottleneck.{leaf}"] = torch.ones(shape)
        out[f"{ref}_backbone.bottleneck.num_batches_tracked"] = torch.tensor(7)
        out[f"{ref}_backbone.classifier.0.weight"] = torch.zeros(C, feat)
        out[f"{ref}_backbone.classifier.0.bias"] = torch.zeros(C)
        dims = [(feat, H0), (H0, H1), (H1, Z)]
        for idx, (i, o) in zip((0, 3, 6), dims):
            out[f"{ref}_Bottleneck.bottleneck.model.{idx}.weight"] = torch.zeros(o, i)
            out[f"{ref}_Bottleneck.bottleneck.model.{idx}.bias"] = torch.zeros(o)
        for idx, n in ((1, H0), (4, H1)):
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                out[f"{ref}_Bottleneck.bottleneck.model.{idx}.{leaf}"] = torch.ones(n)
            out[f"{ref}_Bottleneck.bottleneck.model.{idx}.num_batches_tracked"] = torch.tensor(3)
        out[f"{ref}_Bottleneck.classifier.0.weight"] = torch.zeros(CLS, Z)
        out[f"{ref}_Bottleneck.classifier.0.bias"] = torch.zeros(CLS)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            out[f"{ref}_Bottleneck.classifier.1.{leaf}"] = torch.ones(CLS)
        out[f"{ref}_Bottleneck.classifier.1.num_batches_tracked"] = torch.tensor(3)
        out[f"{ref}_Bottleneck.classifier.4.weight"] = torch.zeros(C, CLS)
        out[f"{ref}_Bottleneck.classifier.4.bias"] = torch.zeros(C)
    for k, v in out.items():  # random but sane values
        if v.dtype.is_floating_point and "gamma" not in k:
            if k.endswith("running_var") or (k.endswith("weight") and v.ndim == 1):
                out[k] = torch.from_numpy(rng.uniform(0.5, 1.5, tuple(v.shape)).astype(np.float32))
            else:
                out[k] = torch.from_numpy((0.1 * rng.standard_normal(tuple(v.shape))).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def tar(tmp_path_factory):
    path = tmp_path_factory.mktemp("orig") / "model_best.pth.tar"
    state = original_state()
    torch.save({"model": state, "epoch": 12, "best_top1": 0.42}, str(path))
    return str(path), state


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def test_mapping_names_every_reference_key(tar):
    _, state = tar
    mapped, dropped = mvd_import.original_to_canonical(state)
    assert sorted(dropped) == sorted(f"{r}_backbone.base.fc.{leaf}" for r in ("RGB", "IR", "shared")
                                     for leaf in ("weight", "bias"))
    assert "visible.backbone.shallow_cam2.scale" in mapped and "infrared.ib.net.6.bias" in mapped
    assert "shared.neck.classifier.bias" in mapped and "visible.ib_classifier.net.4.weight" in mapped
    assert np.array_equal(mapped["infrared.backbone.layer1.0.conv1.weight"].numpy(),
                          state["IR_backbone.base.layer1.0.conv1.weight"].numpy())
    with pytest.raises(CheckpointError, match="RGB_backbone.extra"):
        mvd_import.original_to_canonical(dict(state, **{"RGB_backbone.extra.weight": torch.zeros(1)}))


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_test_py_evaluates_an_original_checkpoint(tar, root, backend, capsys):
    import test as test_cli
    path, state = tar
    assert test_cli.main(["--data-path", root, "--resume", path, "--backend", backend, *SETS]) == 0
    out = capsys.readouterr().out
    assert "original MVD code" in out and "R1" in out and "indoor" in out
    import backends
    B = backends.get(backend)
    from common.config import load_config
    cfg = load_config("configs/mvd_original.yaml", [s for s in SETS[1::2] if "=" in s])
    model = B.mvd.build_model(cfg, C)
    B.checkpoint.load_checkpoint(path, model)
    got = B.weights.state_to_numpy(model)
    assert np.array_equal(got["shared.ib.net.3.weight"], state["shared_Bottleneck.bottleneck.model.3.weight"].numpy())
    assert np.array_equal(got["visible.backbone.bn1.running_var"], state["RGB_backbone.base.bn1.running_var"].numpy())


def test_convert_weights_converts_an_original_checkpoint(tar, tmp_path):
    pytest.importorskip("mindspore")
    from tools import convert_weights
    path, state = tar
    out = str(tmp_path / "converted.ckpt")
    assert convert_weights.main([path, out]) == 0
    converted, extra, _ = convert_weights.read_weights(out)
    assert extra["imported_from"] == mvd_import.IMPORTED_FROM and extra["num_classes"] == C
    assert np.array_equal(converted["infrared.neck.bottleneck.running_mean"],
                          state["IR_backbone.bottleneck.running_mean"].numpy())


def test_another_architecture_names_the_first_missing_and_unexpected_key(tar, root, tmp_path, capsys):
    import test as test_cli
    _, state = tar
    other = {k.replace("layer4", "layer5"): v for k, v in state.items()}
    path = str(tmp_path / "other.pth.tar")
    torch.save({"model": other}, path)
    assert test_cli.main(["--data-path", root, "--resume", path, *SETS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing (e.g. infrared.backbone.layer4" in err[0] and "unexpected (e.g." in err[0]
    assert "layer5" in err[0]
