"""The MVD network in both backends (one body, the ``B`` fixture): the reference and routed
flows (which encoder sees which input), the grey copy, the test features, the network
variants of the two references (BNNeck shift, classifier bias, head initialisation,
ShallowCAM), weights round trips and ImageNet loading."""
import numpy as np
import pytest

from common.config import load_config
from common.errors import CheckpointError
from common.netspec import MVD_OUTPUT_NAMES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model.arch=resnet18", "model.width=8", "mvd.z_dim=16", "mvd.ib_hidden=[32,24]", "mvd.cls_hidden=12",
        "mvd.dropout=0.0"]


def build(B, recipe="mvd_port", extra=(), num_classes=7, seed=0):
    B.device.set_seed(seed)
    cfg = load_config(f"configs/{recipe}.yaml", TINY + list(extra))
    return B.mvd.build_model(cfg, num_classes)


def images(seed, n=2):
    return np.random.default_rng(seed).standard_normal((n, 3, 64, 32)).astype(np.float32)


def tensor(B, x):
    if B.name == "torch":
        import torch
        return torch.from_numpy(x)
    import mindspore as ms
    return ms.Tensor(x)


def numpy(t):
    return t.detach().numpy() if hasattr(t, "detach") else t.asnumpy()


def set_eval(B, net):
    net.eval() if B.name == "torch" else net.set_train(False)
    return net


def grey(x, coeffs):
    g = coeffs[0] * x[:, 0:1] + coeffs[1] * x[:, 1:2] + coeffs[2] * x[:, 2:3]
    return np.repeat(g, 3, axis=1)


def test_reference_flow_sends_every_image_through_four_paths(B):
    """visible(x), infrared(grey(x)), shared(x), shared(grey(x)) with x = [rgb; ir] and the
    port's grey weights 0.2989/0.5870/0.1440 (src/models/mvd.py to_edge)."""
    net = set_eval(B, build(B))
    rgb, ir = images(0), images(1)
    out = [numpy(o) for o in net(tensor(B, rgb), tensor(B, ir))]
    assert len(out) == len(MVD_OUTPUT_NAMES) == 16 and all(o.shape[0] == 4 for o in out)
    x = np.concatenate([rgb, ir])
    g = grey(x, (0.2989, 0.5870, 0.1440))
    for path, (encoder, inp) in enumerate([(net.visible, x), (net.infrared, g), (net.shared, x), (net.shared, g)]):
        direct = [numpy(o) for o in encoder(tensor(B, inp))]
        for k in range(4):
            np.testing.assert_allclose(out[4 * path + k], direct[k], rtol=1e-4, atol=1e-5, err_msg=MVD_OUTPUT_NAMES[4 * path + k])


def test_original_grey_coefficients_differ_in_blue(B):
    net = set_eval(B, build(B, "mvd_original", ["mvd.shallow_cam=false"]))
    x = images(2, 1)
    np.testing.assert_allclose(numpy(net.grey(tensor(B, x))), grey(x, (0.2989, 0.5870, 0.1140)), rtol=1e-6, atol=1e-6)


def test_routed_flow_sends_rgb_to_visible_and_ir_to_infrared(B):
    net = set_eval(B, build(B, "mvd_routed", ["mvd.test_feature=shared"]))
    rgb, ir = images(0), images(1)
    out = [numpy(o) for o in net(tensor(B, rgb), tensor(B, ir))]
    assert all(o.shape[0] == 2 for o in out)
    np.testing.assert_allclose(out[1], numpy(net.visible(tensor(B, rgb))[1]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[5], numpy(net.infrared(tensor(B, ir))[1]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[13], numpy(net.shared(tensor(B, ir))[1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["parts", "joint"])
def test_four_part_test_feature(B, norm):
    """[v, v_shared, i, i_shared] BN features; 'parts' normalises each (the port's evalfunc),
    'joint' the concatenation (the original's extract_feature.py); the modality does not matter."""
    net = set_eval(B, build(B, extra=[f"mvd.test_norm={norm}"]))
    x = images(3, 3)
    feat = numpy(net.extract(tensor(B, x), "infrared"))
    assert feat.shape == (3, 4 * net.feat_dim)
    np.testing.assert_allclose(feat, numpy(net.extract(tensor(B, x), "visible")), rtol=1e-6)
    g = grey(x, (0.2989, 0.5870, 0.1440))
    parts = [numpy(net.visible(tensor(B, x))[1]), numpy(net.shared(tensor(B, x))[1]),
             numpy(net.infrared(tensor(B, g))[1]), numpy(net.shared(tensor(B, g))[1])]
    if norm == "parts":
        expected = np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts], axis=1)
    else:
        cat = np.concatenate(parts, axis=1)
        expected = cat / np.linalg.norm(cat, axis=1, keepdims=True)
    np.testing.assert_allclose(feat, expected, rtol=1e-4, atol=1e-5)


def test_neck_variants_of_the_references(B):
    port, original = build(B), build(B, "mvd_original")
    w = B.weights.state_to_numpy(port)
    assert "visible.neck.classifier.bias" in w and "visible.neck.classifier.bias" in B.weights.state_to_numpy(original)
    trainable = {n for n, _ in _trainable(B, port)}
    assert "visible.neck.bottleneck.bias" in trainable                               # port: trainable shift
    assert "visible.neck.bottleneck.bias" not in {n for n, _ in _trainable(B, original)}  # original: frozen
    assert "visible.backbone.shallow_cam.scale" in B.weights.state_to_numpy(original)
    routed = B.weights.state_to_numpy(build(B, "mvd_routed"))
    assert "visible.neck.classifier.bias" not in routed


def _trainable(B, net):
    if B.name == "torch":
        return [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    from common.weights import ms_to_torch_names
    params = dict(net.parameters_and_names())
    names = ms_to_torch_names(params)
    return [(names[n], p) for n, p in params.items() if p.requires_grad]


def test_head_initialisations(B):
    """port: every Linear N(0, 0.01) with zero bias (MindSpore 1.3 defaults); original: IB
    Linear kaiming-normal fan_out, IB BN weight N(1, 0.02), classifiers N(0, 0.001)."""
    wide = ["mvd.z_dim=256", "mvd.ib_hidden=[512,256]", "mvd.cls_hidden=128"]
    p = B.weights.state_to_numpy(build(B, extra=wide, num_classes=300))
    assert abs(p["visible.ib.net.0.weight"].std() - 0.01) < 0.001 and not p["visible.ib.net.0.bias"].any()
    assert abs(p["visible.neck.classifier.weight"].std() - 0.01) < 0.001
    assert abs(p["visible.ib_classifier.net.4.weight"].std() - 0.01) < 0.001
    o = B.weights.state_to_numpy(build(B, "mvd_original", wide, num_classes=300))
    assert abs(o["visible.ib.net.0.weight"].std() - np.sqrt(2.0 / 512)) < 0.1 * np.sqrt(2.0 / 512)
    assert abs(o["visible.ib.net.1.weight"].mean() - 1.0) < 0.01 and abs(o["visible.ib.net.1.weight"].std() - 0.02) < 0.005
    assert abs(o["visible.neck.classifier.weight"].std() - 0.001) < 0.0002
    assert abs(o["visible.ib_classifier.net.0.weight"].std() - 0.001) < 0.0002
    assert np.all(o["visible.ib_classifier.net.1.weight"] == 1.0)


def test_shallow_cam_channel_attention_matches_hand_computation(B):
    cam = B.backbones.ChannelAttention()
    x = np.array([[[[1.0, 2.0]], [[0.5, -1.0]]]], np.float32)  # (1, 2, 1, 2)
    np.testing.assert_array_equal(numpy(cam(tensor(B, x))), x)  # scale starts at 0
    B.weights.load_numpy_state(cam, {"scale": np.ones(1, np.float32)})
    flat = x.reshape(2, 2).astype(np.float64)
    energy = flat @ flat.T
    energy_new = energy.max(axis=1, keepdims=True) - energy
    attn = np.exp(energy_new) / np.exp(energy_new).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(numpy(cam(tensor(B, x))), (attn @ flat + flat).reshape(1, 2, 1, 2), atol=1e-5)


def test_state_round_trip_is_bit_exact_and_strict(B):
    src = build(B)
    state = B.weights.state_to_numpy(src)
    dst = build(B, seed=1)
    assert B.weights.load_numpy_state(dst, state) == ([], [])
    back = B.weights.state_to_numpy(dst)
    assert all(np.array_equal(back[k], state[k]) for k in state)
    bad = dict(state)
    bad["visible.neck.classifier.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError, match="visible.neck.classifier.weight"):
        B.weights.load_numpy_state(dst, bad)


def test_imagenet_weights_load_into_the_three_backbones(B, tmp_path):
    from safetensors.numpy import save_file
    ref = B.weights.state_to_numpy(B.backbones.ResNet(depth=18, width=8))
    ref = {k: np.random.default_rng(0).standard_normal(v.shape).astype(np.float32) for k, v in ref.items()}
    path = str(tmp_path / "r18.safetensors")
    save_file(dict(ref, **{"fc.weight": np.zeros((10, 64), np.float32)}), path)
    net = build(B, "mvd_original")  # ShallowCAM parameters keep their own initialisation
    loaded = B.weights.load_backbone_pretrained(net, path)
    assert len(loaded) == 3
    state = B.weights.state_to_numpy(net)
    for enc in ("visible", "infrared", "shared"):
        assert all(np.array_equal(state[f"{enc}.backbone.{k}"], v) for k, v in ref.items())
    del ref["layer1.0.conv1.weight"]
    save_file(ref, path)
    with pytest.raises(CheckpointError, match=r"layer1\.0\.conv1\.weight"):
        B.weights.load_backbone_pretrained(build(B), path)
