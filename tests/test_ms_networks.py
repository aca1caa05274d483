"""MindSpore networks (SPEC 6) and weights between frameworks (SPEC 11), small configs on CPU."""
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from common.errors import CheckpointError, ConfigError  # noqa: E402
from backends.mindspore.device import select_device  # noqa: E402
from backends.mindspore.heads import BNNeck, IBClassifier, IBHead  # noqa: E402
from backends.mindspore.mvd import MVD_OUTPUTS, MVDNet, ReIDNet, build_model, grayscale3  # noqa: E402
from backends.mindspore.backbones.resnet import ChannelAttention, ResNet  # noqa: E402
from backends.mindspore.weights import (load_backbone_pretrained, load_numpy_state,  # noqa: E402
                                        state_to_numpy)

BN = ("weight", "bias", "running_mean", "running_var")
SMALL_MVD = dict(depth=18, width=8, z_dim=16, ib_hidden=(32, 24), cls_hidden=12)


def _r18_expected_names():
    """Hand-written module list of ResNet-18 (torchvision layout), leaves expanded."""
    convs = ["conv1"]
    bns = ["bn1"]
    for block in ("layer1.0", "layer1.1", "layer2.0", "layer2.1",
                  "layer3.0", "layer3.1", "layer4.0", "layer4.1"):
        convs += [block + ".conv1", block + ".conv2"]
        bns += [block + ".bn1", block + ".bn2"]
    for block in ("layer2.0", "layer3.0", "layer4.0"):  # channel change -> projection
        convs.append(block + ".downsample.0")
        bns.append(block + ".downsample.1")
    return {c + ".weight" for c in convs} | {f"{b}.{leaf}" for b in bns for leaf in BN}


@pytest.fixture(autouse=True)
def pynative():
    select_device("CPU", 0)  # idempotent; also caps MindSpore CPU threads
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _images(n=2, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal((n, 3, 64, 32)).astype(np.float32))


def _randomised(model, seed=1):
    """Fill every parameter/statistic with distinct random values (variances positive)."""
    rng = np.random.default_rng(seed)
    state = {k: rng.standard_normal(v.shape).astype(np.float32) * 0.1 for k, v in state_to_numpy(model).items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = np.abs(state[k]) + 0.5
    load_numpy_state(model, state)
    return state


def test_resnet_output_shapes_and_depths():
    r18 = ResNet(depth=18, last_stride=1, width=8)
    assert r18.feat_dim == 64
    assert r18(_images()).shape == (2, 64, 4, 2)  # /4 stem, /2, /2, last stride 1
    r50 = ResNet(depth=50, last_stride=2, width=8)
    assert r50.feat_dim == 256
    assert r50(_images()).shape == (2, 256, 2, 1)
    with pytest.raises(ValueError, match="18, 34, 50, 101"):
        ResNet(depth=42)


def test_resnet18_canonical_names_and_shapes():
    state = state_to_numpy(ResNet(depth=18, width=8))
    assert set(state) == _r18_expected_names()
    assert state["conv1.weight"].shape == (8, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (16, 8, 1, 1)
    assert state["layer4.1.conv2.weight"].shape == (64, 64, 3, 3)
    assert all(v.dtype == np.float32 for v in state.values())
    np.testing.assert_array_equal(state["bn1.weight"], np.ones(8, np.float32))
    np.testing.assert_array_equal(state["bn1.running_var"], np.ones(8, np.float32))


def test_resnet50_bottleneck_layout():
    state = state_to_numpy(ResNet(depth=50, width=8))
    assert state["layer1.0.downsample.0.weight"].shape == (32, 8, 1, 1)
    assert state["layer1.0.conv3.weight"].shape == (32, 8, 1, 1)
    assert state["layer4.0.conv2.weight"].shape == (64, 64, 3, 3)  # stride on the 3x3 (v1.5)
    assert {k.split(".")[1] for k in state if k.startswith("layer3.")} == {"0", "1", "2", "3", "4", "5"}
    assert "layer1.1.downsample.0.weight" not in state


def test_bnneck_frozen_bias_and_hand_computed_forward():
    neck = BNNeck(4, 3)
    assert neck.bottleneck.beta.requires_grad is False
    assert neck.bottleneck.gamma.requires_grad is True
    assert set(state_to_numpy(neck)) == {f"bottleneck.{leaf}" for leaf in BN} | {"classifier.weight"}
    assert abs(float(neck.classifier.weight.asnumpy().std()) - 0.001) < 0.001
    feat = np.arange(8, dtype=np.float32).reshape(2, 4)
    weight = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    load_numpy_state(neck, {"bottleneck.weight": np.ones(4), "bottleneck.bias": np.zeros(4),
                            "bottleneck.running_mean": np.ones(4), "bottleneck.running_var": np.full(4, 4.0),
                            "classifier.weight": weight})
    neck.set_train(False)
    bn_feat, logits = neck(Tensor(feat))
    expect = (feat - 1.0) / np.sqrt(4.0 + 1e-5)
    np.testing.assert_allclose(bn_feat.asnumpy(), expect, rtol=1e-6)
    np.testing.assert_allclose(logits.asnumpy(), expect @ weight.T, rtol=1e-5)
    neck.set_train(True)  # momentum 0.9 in MindSpore == 0.1 in torch: new = 0.9 old + 0.1 batch
    neck(Tensor(feat))
    np.testing.assert_allclose(neck.bottleneck.moving_mean.asnumpy(), 0.9 * 1 + 0.1 * feat.mean(0), rtol=1e-6)


def test_ib_head_and_classifier_names():
    head = state_to_numpy(IBHead(8, z_dim=4, hidden=(6, 5)))
    assert head["net.0.weight"].shape == (6, 8) and head["net.3.weight"].shape == (5, 6)
    assert head["net.6.weight"].shape == (4, 5) and "net.4.running_var" in head
    assert {k.split(".")[1] for k in head} == {"0", "1", "3", "4", "6"}
    cls = IBClassifier(4, 3, hidden=7, dropout=0.0)
    assert type(cls.net[3]).__name__ == "Identity"
    assert {k.split(".")[1] for k in state_to_numpy(cls)} == {"0", "1", "4"}
    assert type(IBClassifier(4, 3, hidden=7, dropout=0.5).net[3]).__name__ == "Dropout"
    assert IBHead(8, 4, (6, 5))(Tensor(np.ones((3, 8), np.float32))).shape == (3, 4)


def test_mvdnet_outputs_extract_and_unique_names():
    net = MVDNet(5, **SMALL_MVD)
    names = list(dict(net.parameters_and_names()))
    assert len(names) == len(set(names))
    per_encoder = [sum(n.startswith(p + ".") for n in names) for p in ("visible", "infrared", "shared")]
    assert per_encoder[0] == per_encoder[1] == per_encoder[2] == len(names) // 3
    assert {p.name for p in net.get_parameters()} == set(names)  # MindSpore names = full paths
    state = state_to_numpy(net)
    assert "infrared.backbone.layer1.0.conv1.weight" in state and "shared.neck.bottleneck.bias" in state
    assert "visible.ib_classifier.net.4.weight" in state
    _randomised(net)
    net.set_train(False)
    rgb, ir = _images(2, 0), _images(2, 1)
    out = net(rgb, ir)
    assert len(out) == len(MVD_OUTPUTS) == 15 and MVD_OUTPUTS[5] == "feat_i"
    dims = (64, 64, 5, 16, 5)
    for j, o in enumerate(out):
        assert o.shape == ((2 if j < 10 else 4), dims[j % 5]), MVD_OUTPUTS[j]
    # shared encoder saw concat([rgb, ir]) with rgb first (eval BN acts per sample)
    np.testing.assert_allclose(out[11].asnumpy()[2:], net.shared(ir)[1].asnumpy(), rtol=1e-4, atol=1e-5)
    feat = net.extract(rgb, "visible").asnumpy()
    assert feat.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(feat, axis=1), 1.0, rtol=1e-5)
    raw = np.concatenate([out[1].asnumpy(), out[11].asnumpy()[:2]], axis=1)
    np.testing.assert_allclose(feat, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="modality"):
        net.extract(rgb, "thermal")


def test_gray_ir_branch():
    px = Tensor(np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 3, 1, 1))
    np.testing.assert_allclose(grayscale3(px).asnumpy().ravel(), [1.815] * 3, rtol=1e-6)
    net = MVDNet(5, gray_ir=True, **SMALL_MVD)
    net.set_train(False)
    rgb = _images(2, 0)
    a = net(rgb, _images(2, 1))
    b = net(rgb, _images(2, 2))
    np.testing.assert_array_equal(a[6].asnumpy(), b[6].asnumpy())  # infrared ignores ir
    np.testing.assert_allclose(a[6].asnumpy(), net.infrared(grayscale3(rgb))[1].asnumpy(), rtol=1e-5, atol=1e-6)


def _cam_reference(x, scale):
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w).astype(np.float64)
    energy = flat @ flat.transpose(0, 2, 1)
    energy = energy.max(-1, keepdims=True) - energy
    att = np.exp(energy - energy.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    return scale * (att @ flat).reshape(n, c, h, w) + x


def test_shallow_cam():
    cam = ChannelAttention()
    assert list(state_to_numpy(cam)) == ["scale"]
    x = np.random.default_rng(3).standard_normal((2, 4, 3, 2)).astype(np.float32)
    load_numpy_state(cam, {"scale": np.array([0.7], np.float32)})
    np.testing.assert_allclose(cam(Tensor(x)).asnumpy(), _cam_reference(x, 0.7), rtol=1e-5, atol=1e-5)
    with_cam, plain = ResNet(depth=18, width=8, shallow_cam=True), ResNet(depth=18, width=8)
    state = state_to_numpy(with_cam)
    np.testing.assert_array_equal(state["shallow_cam.scale"], np.zeros(1, np.float32))
    load_numpy_state(plain, {k: v for k, v in state.items() if not k.startswith("shallow_cam")})
    np.testing.assert_allclose(with_cam(_images()).asnumpy(), plain(_images()).asnumpy(), rtol=1e-5, atol=1e-6)


def test_round_trip_is_bit_exact():
    src = MVDNet(5, shallow_cam=True, **SMALL_MVD)
    state = _randomised(src, seed=7)
    dst = MVDNet(5, shallow_cam=True, **SMALL_MVD)
    missing, unexpected = load_numpy_state(dst, state_to_numpy(src))
    assert missing == [] and unexpected == []
    back = state_to_numpy(dst)
    assert set(back) == set(state)
    for k, v in state.items():
        assert np.array_equal(back[k], v), k
    back["visible.neck.classifier.weight"][0, 0] += 1  # a copy: the model is untouched
    assert np.array_equal(state_to_numpy(dst)["visible.neck.classifier.weight"], state["visible.neck.classifier.weight"])


def test_strict_errors_name_the_key():
    model = ReIDNet(4, depth=18, width=8)
    state = state_to_numpy(model)
    before = state_to_numpy(model)["neck.classifier.weight"]
    bad = dict(state)
    del bad["backbone.layer1.0.conv1.weight"]
    with pytest.raises(CheckpointError, match=r"missing.*backbone\.layer1\.0\.conv1\.weight"):
        load_numpy_state(model, bad)
    with pytest.raises(CheckpointError, match=r"unexpected.*extra\.weight"):
        load_numpy_state(model, dict(state, **{"extra.weight": np.zeros(1)}))
    wrong = dict(state, **{"neck.classifier.weight": np.zeros((3, 64), np.float32)})
    with pytest.raises(CheckpointError, match=r"neck\.classifier\.weight expected \(4, 64\) got \(3, 64\)"):
        load_numpy_state(model, wrong)
    with pytest.raises(CheckpointError, match="shape"):
        load_numpy_state(model, wrong, strict=False)
    np.testing.assert_array_equal(state_to_numpy(model)["neck.classifier.weight"], before)
    partial = {"neck.classifier.weight": np.ones((4, 64)), "x.num_batches_tracked": np.zeros(()), "y": np.ones(2)}
    missing, unexpected = load_numpy_state(model, partial, strict=False)
    assert unexpected == ["y"] and "backbone.conv1.weight" in missing
    np.testing.assert_array_equal(state_to_numpy(model)["neck.classifier.weight"], np.ones((4, 64)))


def test_load_backbone_pretrained_safetensors(tmp_path):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(5)
    weights = {k: rng.standard_normal(v.shape).astype(np.float32)
               for k, v in state_to_numpy(ResNet(depth=18, width=8)).items()}
    extra = {"fc.weight": np.ones((10, 64), np.float32), "fc.bias": np.ones(10, np.float32),
             "bn1.num_batches_tracked": np.zeros((), np.int64)}
    path = tmp_path / "r18.safetensors"
    save_file(dict(weights, **extra), str(path))
    net = MVDNet(5, shallow_cam=True, **SMALL_MVD)
    loaded = load_backbone_pretrained(net, path)
    assert len(loaded) == 3 and loaded[0] is net.visible.backbone
    state = state_to_numpy(net)
    for prefix in ("visible", "infrared", "shared"):
        for k, v in weights.items():
            assert np.array_equal(state[f"{prefix}.backbone.{k}"], v), k
    assert np.array_equal(state["shared.backbone.shallow_cam.scale"], np.zeros(1, np.float32))
    del weights["layer3.1.bn2.running_var"]
    save_file(weights, str(tmp_path / "short.safetensors"))
    with pytest.raises(CheckpointError, match=r"layer3\.1\.bn2\.running_var"):
        load_backbone_pretrained(ReIDNet(3, depth=18, width=8), tmp_path / "short.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone_pretrained(net, tmp_path / "none.safetensors")


def test_load_backbone_pretrained_pth(tmp_path):
    torch = pytest.importorskip("torch")
    src = ResNet(depth=18, width=8)
    weights = _randomised(src, seed=9)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, str(tmp_path / "r18.pth"))
    model = ReIDNet(3, depth=18, width=8)
    assert load_backbone_pretrained(model, tmp_path / "r18.pth") == [model.backbone]
    assert np.array_equal(state_to_numpy(model)["backbone.layer4.1.bn2.weight"], weights["layer4.1.bn2.weight"])


def test_build_model():
    assert isinstance(build_model({"name": "reid", "depth": 18, "width": 8}, 3), ReIDNet)
    net = build_model(dict(name="mvd", gray_ir=True, dropout=0, **SMALL_MVD), 3)
    assert isinstance(net, MVDNet) and net.gray_ir and net.feat_dim == 64
    with pytest.raises(ConfigError, match="model.name"):
        build_model({"name": "osnet"}, 3)
    with pytest.raises(ConfigError, match="depth"):
        build_model({"name": "reid", "depth": 42}, 3)


def test_graph_mode_matches_pynative():
    net = MVDNet(5, gray_ir=True, shallow_cam=True, dropout=0.0, **SMALL_MVD)
    _randomised(net, seed=11)
    net.set_train(False)
    rgb, ir = _images(2, 0), _images(2, 1)
    eager = [o.asnumpy() for o in net(rgb, ir)]
    try:
        ms.set_context(mode=ms.GRAPH_MODE)
        graph = [o.asnumpy() for o in net(rgb, ir)]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert len(graph) == 15
    for name, a, b in zip(MVD_OUTPUTS, eager, graph):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)
