"""Tests for backends/torch networks and weights (SPEC sections 6, 11; network contract)."""
import numpy as np
import pytest
import torch

from backends.torch.heads import BNNeck, IBClassifier, IBHead
from backends.torch.mvd import MVD_OUTPUTS, MVDNet, ReIDNet, build_model, grayscale3
from backends.torch.backbones.resnet import ChannelAttention, ResNet
from backends.torch.weights import load_backbone_pretrained, load_numpy_state, state_to_numpy
from common.errors import CheckpointError, ConfigError

BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
SMALL = dict(depth=18, width=8)


def images(seed=0, batch=2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 64, 32, generator=gen)


def expected_resnet18_names():
    """torchvision resnet18 state_dict names (minus fc), written out by rule."""
    names = ["conv1.weight"] + [f"bn1.{leaf}" for leaf in BN_LEAVES]
    for layer in (1, 2, 3, 4):
        for block in (0, 1):
            p = f"layer{layer}.{block}"
            names += [f"{p}.conv1.weight"] + [f"{p}.bn1.{leaf}" for leaf in BN_LEAVES]
            names += [f"{p}.conv2.weight"] + [f"{p}.bn2.{leaf}" for leaf in BN_LEAVES]
            if block == 0 and layer > 1:
                names += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{leaf}" for leaf in BN_LEAVES]
    return names


@pytest.mark.parametrize("depth,feat_dim", [(18, 64), (50, 256)])
@pytest.mark.parametrize("last_stride,hw", [(1, (4, 2)), (2, (2, 1))])
def test_resnet_output_shape(depth, feat_dim, last_stride, hw):
    net = ResNet(depth=depth, last_stride=last_stride, width=8).eval()
    assert net.feat_dim == feat_dim
    with torch.no_grad():
        out = net(images())
    assert tuple(out.shape) == (2, feat_dim) + hw
    assert out.dtype == torch.float32


def test_resnet18_names_follow_torchvision():
    net = ResNet(depth=18, width=8)
    assert list(net.state_dict().keys()) == expected_resnet18_names()
    state = net.state_dict()
    assert tuple(state["conv1.weight"].shape) == (8, 3, 7, 7)
    assert tuple(state["layer2.0.downsample.0.weight"].shape) == (16, 8, 1, 1)
    assert tuple(state["layer4.1.conv2.weight"].shape) == (64, 64, 3, 3)
    assert net.layer1[0].downsample is None
    assert torch.all(state["bn1.weight"] == 1) and torch.all(state["bn1.bias"] == 0)


def test_resnet50_bottleneck_layout():
    state = ResNet(depth=50, width=8).state_dict()
    assert tuple(state["layer1.0.conv1.weight"].shape) == (8, 8, 1, 1)
    assert tuple(state["layer1.0.conv3.weight"].shape) == (32, 8, 1, 1)
    assert tuple(state["layer1.0.downsample.0.weight"].shape) == (32, 8, 1, 1)
    # v1.5: the stride sits on the 3x3 convolution
    net = ResNet(depth=50, width=8)
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[0].conv1.stride == (1, 1)
    assert net.layer4[0].conv2.stride == (1, 1)  # last_stride 1
    assert "layer3.5.bn3.running_var" in state and "layer3.6.conv1.weight" not in state


def test_resnet_unknown_depth():
    with pytest.raises(ValueError, match="18, 34, 50, 101"):
        ResNet(depth=20)


def test_relu_out_flag_allows_negative_outputs():
    net = ResNet(**SMALL).eval()
    with torch.no_grad():
        assert net(images()).min() >= 0
        net.layer4[-1].relu_out = False
        assert net(images()).min() < 0


def test_bnneck_init():
    neck = BNNeck(256, 1000)
    assert neck.bottleneck.bias.requires_grad is False
    assert neck.bottleneck.weight.requires_grad is True
    assert torch.all(neck.bottleneck.weight == 1) and torch.all(neck.bottleneck.bias == 0)
    assert neck.classifier.bias is None
    assert 0.0008 < neck.classifier.weight.std().item() < 0.0012
    bn_feat, logits = neck.eval()(torch.ones(3, 256))
    assert tuple(bn_feat.shape) == (3, 256) and tuple(logits.shape) == (3, 1000)


def test_ib_head_and_classifier_names():
    head = IBHead(64, z_dim=16, hidden=(32, 24))
    assert sorted({k.rsplit(".", 1)[0] for k in head.state_dict()}) == ["net.0", "net.1", "net.3", "net.4", "net.6"]
    cls = IBClassifier(16, 5, hidden=12, dropout=0.5)
    assert sorted({k.rsplit(".", 1)[0] for k in cls.state_dict()}) == ["net.0", "net.1", "net.4"]
    assert isinstance(IBClassifier(16, 5, dropout=0.0).net[3], torch.nn.Identity)


def test_mvd_forward_shapes():
    net = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, **SMALL)
    out = net(images(0), images(1))
    assert len(out) == 15 == len(MVD_OUTPUTS)
    per_encoder = [(64,), (64,), (7,), (16,), (7,)]
    for k, name in enumerate(MVD_OUTPUTS):
        rows = 4 if name.endswith("_s") else 2
        assert tuple(out[k].shape) == (rows,) + per_encoder[k % 5], name


def test_mvd_extract_is_normalised_concat():
    net = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, **SMALL).eval()
    rgb, ir = images(0), images(1)
    with torch.no_grad():
        vis = net.extract(rgb, "visible")
        inf = net.extract(ir, "infrared")
        expected = torch.cat([net.visible(rgb)[1], net.shared(rgb)[1]], dim=1)
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert tuple(vis.shape) == (2, 128) and tuple(inf.shape) == (2, 128)
    assert torch.allclose(vis.norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(inf.norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(vis, expected, atol=1e-6)
    with pytest.raises(ValueError, match="modality"):
        net.extract(rgb, "thermal")


def test_grayscale3_values():
    x = torch.zeros(1, 3, 1, 3)
    x[0, 0, 0, 0], x[0, 1, 0, 1], x[0, 2, 0, 2] = 1.0, 1.0, 1.0
    gray = grayscale3(x)
    assert tuple(gray.shape) == (1, 3, 1, 3)
    for c in range(3):
        assert torch.allclose(gray[0, c, 0], torch.tensor([0.299, 0.587, 0.114]))


def test_gray_ir_branch_ignores_ir_input():
    net = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, gray_ir=True, **SMALL).eval()
    rgb = images(0)
    with torch.no_grad():
        a = net(rgb, images(1))
        b = net(rgb, images(2))
        direct = net.infrared(grayscale3(rgb))
    assert torch.equal(a[6], b[6])
    assert torch.allclose(a[6], direct[1])
    assert not torch.allclose(a[11], b[11])  # the shared encoder does see ir


def test_channel_attention_matches_hand_computation():
    cam = ChannelAttention()
    assert tuple(cam.scale.shape) == (1,) and cam.scale.item() == 0.0
    x = torch.tensor([[[[1.0, 2.0]], [[0.5, -1.0]]]])  # (1, 2, 1, 2)
    assert torch.equal(cam(x), x)
    with torch.no_grad():
        cam.scale.fill_(1.0)
    flat = x.reshape(2, 2).numpy().astype(np.float64)
    energy = flat @ flat.T                              # [[5, -1.5], [-1.5, 1.25]]
    energy_new = energy.max(axis=1, keepdims=True) - energy
    attn = np.exp(energy_new) / np.exp(energy_new).sum(axis=1, keepdims=True)
    expected = (attn @ flat + flat).reshape(1, 2, 1, 2)
    assert np.allclose(cam(x).detach().numpy(), expected, atol=1e-6)


def test_shallow_cam_starts_as_identity():
    plain = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, **SMALL).eval()
    cam = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, shallow_cam=True, **SMALL).eval()
    assert cam.visible.backbone.shallow_cam.scale.item() == 0.0
    missing, unexpected = load_numpy_state(cam, state_to_numpy(plain), strict=False)
    assert missing == [f"{e}.backbone.shallow_cam{i}.scale" for e in ("infrared", "shared", "visible")
                       for i in ("", "2", "3")]
    assert unexpected == []
    rgb, ir = images(0), images(1)
    with torch.no_grad():
        for a, b in zip(plain(rgb, ir), cam(rgb, ir)):
            assert torch.allclose(a, b, atol=1e-6)
        cam.visible.backbone.shallow_cam.scale.fill_(0.5)
        assert not torch.allclose(plain(rgb, ir)[0], cam(rgb, ir)[0], atol=1e-4)


def test_dropout_zero_train_mode_is_deterministic():
    rgb, ir = images(0), images(1)
    det = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, dropout=0.0, **SMALL).train()
    a, b = det(rgb, ir), det(rgb, ir)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    noisy = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, dropout=0.5, **SMALL).train()
    torch.manual_seed(0)
    c = noisy(rgb, ir)
    d = noisy(rgb, ir)
    assert not torch.equal(c[4], d[4])


def test_state_round_trip_is_bit_exact():
    src = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, **SMALL)
    src.train()(images(0), images(1))  # move running statistics away from their init
    state = state_to_numpy(src)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    assert all(v.dtype == np.float32 for v in state.values())
    assert "shared.neck.bottleneck.running_mean" in state and "visible.ib_classifier.net.4.weight" in state
    dst = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, **SMALL)
    assert load_numpy_state(dst, state) == ([], [])
    back = state_to_numpy(dst)
    assert back.keys() == state.keys()
    for k in state:
        assert np.array_equal(back[k].view(np.uint32), state[k].view(np.uint32)), k


def test_strict_load_errors_name_the_key():
    net = ReIDNet(5, **SMALL)
    state = state_to_numpy(net)
    missing = dict(state)
    del missing["backbone.layer3.1.bn2.running_var"]
    with pytest.raises(CheckpointError, match=r"backbone\.layer3\.1\.bn2\.running_var"):
        load_numpy_state(net, missing)
    assert load_numpy_state(net, missing, strict=False) == (["backbone.layer3.1.bn2.running_var"], [])
    extra = dict(state, **{"neck.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"neck\.extra\.weight"):
        load_numpy_state(net, extra)
    wrong = dict(state, **{"neck.classifier.weight": np.zeros((5, 63), np.float32)})
    with pytest.raises(CheckpointError, match=r"neck\.classifier\.weight.*\(5, 64\).*\(5, 63\)"):
        load_numpy_state(net, wrong, strict=False)


def _assert_backbone_equals(backbone, reference):
    got, ref = state_to_numpy(backbone), state_to_numpy(reference)
    assert got.keys() == ref.keys()
    assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_load_backbone_pretrained_from_pth(tmp_path):
    imagenet = ResNet(**SMALL)
    with torch.no_grad():
        imagenet.bn1.running_mean.uniform_()
    state = dict(imagenet.state_dict())
    state["fc.weight"] = torch.zeros(1000, 64)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = MVDNet(7, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, shallow_cam=True, **SMALL)
    loaded = load_backbone_pretrained(net, str(path))
    assert loaded == [net.visible.backbone, net.infrared.backbone, net.shared.backbone]
    for backbone in loaded:
        cam_free = {k: v for k, v in state_to_numpy(backbone).items() if not k.startswith("shallow_cam")}
        ref = state_to_numpy(imagenet)
        assert cam_free.keys() == ref.keys() and all(np.array_equal(cam_free[k], ref[k]) for k in ref)


def test_load_backbone_pretrained_from_safetensors(tmp_path):
    from safetensors.numpy import save_file
    imagenet = ResNet(**SMALL)
    state = state_to_numpy(imagenet)
    state["fc.weight"] = np.zeros((1000, 64), np.float32)
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    net = ReIDNet(5, **SMALL)
    assert load_backbone_pretrained(net, str(path)) == [net.backbone]
    _assert_backbone_equals(net.backbone, imagenet)
    del state["layer1.0.conv1.weight"]
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"layer1\.0\.conv1\.weight"):
        load_backbone_pretrained(ReIDNet(5, **SMALL), str(path))
    with pytest.raises(CheckpointError, match="conv1.weight"):
        save_file(state_to_numpy(ResNet(depth=18, width=16)), str(path))
        load_backbone_pretrained(ReIDNet(5, **SMALL), str(path))
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone_pretrained(net, str(tmp_path / "absent.pth"))


def test_build_model():
    reid = build_model({"name": "reid", "depth": 18, "width": 8}, 5)
    assert isinstance(reid, ReIDNet) and reid.neck.classifier.out_features == 5
    mvd = build_model({"depth": 18, "width": 8, "z_dim": 16, "ib_hidden": [32, 24], "dropout": 0}, 5)
    assert isinstance(mvd, MVDNet) and mvd.visible.ib.net[6].out_features == 16
    assert isinstance(mvd.shared.ib_classifier.net[3], torch.nn.Identity)
    with pytest.raises(ConfigError, match="mvd"):
        build_model({"name": "vkd"}, 5)
    with pytest.raises(ConfigError, match="depth"):
        build_model({"name": "reid", "depth": 20}, 5)
