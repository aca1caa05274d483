"""The VKD backbones (aimagelab/VKD model/net.py) in both backends: names, sizes, VKD's edits.

Full-size networks are built on torch's ``meta`` device (shapes without memory or init
cost); MindSpore builds only small ones and is checked against torch by name equality.
The reference numbers below are torchvision's (resnet, densenet, mobilenet_v2 of 0.5) and
VKD's resnet_bam; the parameter counts exclude the ImageNet classifier (torchvision totals:
resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032, resnet101 44,549,160,
densenet121 7,978,856, mobilenet_v2 3,504,872, minus fc / classifier). A BAM on C channels
(hidden r = C/16) holds 3Cr + C + 18r² + 13r + 1 parameters: 358,067 for C = 256, 512, 1024.
"""
import functools
import importlib

import numpy as np
import pytest

from common.backbones import (BACKBONE_FACTS, BACKBONE_NAMES, backbone_facts, rename_legacy_densenet_keys,
                              vkd_checkpoint_key)
from common.errors import ConfigError

torch = pytest.importorskip("torch")

PARAMS_NO_CLASSIFIER = {
    "resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032, "resnet101": 42_500_160,
    "resnet50bam": 23_508_032 + 358_067, "resnet101bam": 42_500_160 + 358_067,
    "densenet121": 6_953_856, "mobilenet": 2_223_872,
}
# state_dict length (num_batches_tracked included, classifier excluded)
STATE_KEYS = {"resnet18": 120, "resnet34": 216, "resnet50": 318, "resnet101": 624, "resnet50bam": 414,
              "resnet101bam": 720, "densenet121": 725, "mobilenet": 312}
_RESNET50_KEYS = {
    "conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer1.2.bn3.weight": (256,),
    "layer2.0.conv2.weight": (128, 128, 3, 3), "layer2.0.downsample.1.running_mean": (512,),
    "layer3.5.conv3.weight": (1024, 256, 1, 1), "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "layer4.2.bn3.num_batches_tracked": (),
}
_BAM_KEYS = {
    "layer1.bam.channel_att.gate_c.gate_c_fc_0.weight": (16, 256),
    "layer1.bam.channel_att.gate_c.gate_c_fc_0.bias": (16,),
    "layer1.bam.channel_att.gate_c.gate_c_bn_1.running_mean": (16,),
    "layer1.bam.channel_att.gate_c.gate_c_fc_final.weight": (256, 16),
    "layer2.bam.spatial_att.gate_s.gate_s_conv_reduce0.weight": (32, 512, 1, 1),
    "layer2.bam.spatial_att.gate_s.gate_s_bn_reduce0.weight": (32,),
    "layer3.bam.spatial_att.gate_s.gate_s_conv_di_0.bias": (64,),
    "layer3.bam.spatial_att.gate_s.gate_s_conv_di_1.weight": (64, 64, 3, 3),
    "layer3.bam.spatial_att.gate_s.gate_s_bn_di_1.num_batches_tracked": (),
    "layer3.bam.spatial_att.gate_s.gate_s_conv_final.weight": (1, 64, 1, 1),
    "layer3.bam.spatial_att.gate_s.gate_s_conv_final.bias": (1,),
}
REFERENCE_KEYS = {
    "resnet18": {"conv1.weight": (64, 3, 7, 7), "layer1.1.bn2.weight": (64,),
                 "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer4.1.conv2.weight": (512, 512, 3, 3)},
    "resnet34": {"layer3.5.conv1.weight": (256, 256, 3, 3), "layer4.2.bn2.running_var": (512,)},
    "resnet50": _RESNET50_KEYS,
    "resnet101": {"layer3.22.conv3.weight": (1024, 256, 1, 1), "layer4.2.bn3.bias": (2048,)},
    "resnet50bam": dict(_RESNET50_KEYS, **_BAM_KEYS),
    "resnet101bam": {"layer3.22.bn3.weight": (1024,), **_BAM_KEYS},
    "densenet121": {
        "features.conv0.weight": (64, 3, 7, 7), "features.norm0.running_mean": (64,),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1),
        "features.denseblock1.denselayer6.conv2.weight": (32, 128, 3, 3),
        "features.transition1.norm.bias": (256,), "features.transition1.conv.weight": (128, 256, 1, 1),
        "features.denseblock2.denselayer12.norm1.running_var": (480,),
        "features.denseblock3.denselayer24.norm2.num_batches_tracked": (),
        "features.transition3.conv.weight": (512, 1024, 1, 1),
        "features.denseblock4.denselayer16.conv2.weight": (32, 128, 3, 3),
        "features.norm5.weight": (1024,), "features.norm5.running_var": (1024,),
    },
    "mobilenet": {
        "features.0.0.weight": (32, 3, 3, 3), "features.0.1.running_mean": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3), "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.weight": (16,), "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3), "features.2.conv.2.weight": (24, 96, 1, 1),
        "features.2.conv.3.running_var": (24,), "features.14.conv.1.0.weight": (576, 1, 3, 3),
        "features.14.conv.2.weight": (160, 576, 1, 1), "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1), "features.18.1.weight": (1280,),
    },
}
ABSENT_KEYS = {"resnet101": "layer3.23.conv1.weight", "resnet18": "fc.weight",
               "resnet50bam": "layer4.bam.channel_att.gate_c.gate_c_fc_0.weight",
               "densenet121": "classifier.weight", "mobilenet": "features.19.0.weight"}
SMALL = {"resnet18": dict(width=8), "resnet34": dict(width=8), "resnet50": dict(width=8),
         "resnet101": dict(width=8), "resnet50bam": dict(width=8), "resnet101bam": dict(width=8),
         "densenet121": dict(growth_rate=4, num_init_features=8, bn_size=2), "mobilenet": dict(width_mult=0.25)}
BACKENDS = ("torch", "mindspore")


class Backend:
    """The backbones and weights modules of one backend plus tensor conversions."""

    def __init__(self, name):
        self.name = name
        self.backbones = importlib.import_module(f"backends.{name}.backbones")
        self.weights = importlib.import_module(f"backends.{name}.weights")
        if name == "mindspore":
            import mindspore as ms
            from backends.mindspore.device import select_device
            select_device("CPU", 0)
            ms.set_context(mode=ms.PYNATIVE_MODE)
            self._ms = ms

    def tensor(self, array):
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)) if self.name == "torch" \
            else self._ms.Tensor(np.ascontiguousarray(array, np.float32))

    @staticmethod
    def numpy(tensor):
        return tensor.detach().numpy() if hasattr(tensor, "detach") else tensor.asnumpy()

    def eval(self, net):
        if self.name == "torch":
            return net.eval()
        net.set_train(False)
        return net

    def run(self, net, array):
        if self.name == "torch":
            with torch.no_grad():
                return self.numpy(net(self.tensor(array)))
        return self.numpy(net(self.tensor(array)))


@pytest.fixture(autouse=True)
def torch_single_thread():
    """Tiny tensors: one torch thread is faster, and far faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "mindspore":
        pytest.importorskip("mindspore")
    return Backend(request.param)


@functools.lru_cache(maxsize=None)
def full_size_torch(name):
    """The full-size torch backbone ``name`` on the meta device (no memory, no init cost)."""
    from backends.torch.backbones import build_backbone
    with torch.device("meta"):
        return build_backbone(name)


def _randomise_bn_stats(backend, net, seed=0):
    """Random conv weights stay; BN statistics and affine parameters get spread-out values so
    that eval-mode outputs have both signs."""
    rng = np.random.default_rng(seed)
    state = backend.weights.state_to_numpy(net)
    for key, value in state.items():
        if key.endswith(("running_mean", ".bias")):
            state[key] = rng.normal(0.0, 0.5, value.shape).astype(np.float32)
        elif key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
    backend.weights.load_numpy_state(net, state)
    return net


# ---------------------------------------------------------------- names and sizes (torch, full size)

@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_full_size_names_shapes_and_counts_match_the_references(name):
    net = full_size_torch(name)
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == PARAMS_NO_CLASSIFIER[name]
    assert len(state) == STATE_KEYS[name]
    for key, shape in REFERENCE_KEYS[name].items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    if name in ABSENT_KEYS:
        assert ABSENT_KEYS[name] not in state
    assert net.feat_dim == BACKBONE_FACTS[name].feat_dim


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_vkd_reset_prefix_names_a_real_stage(name):
    """VKD's reinit_layers resets layer4 / denseblock4 (norm5 stays); MobileNet resets nothing."""
    facts = backbone_facts(name)
    keys = list(full_size_torch(name).state_dict())
    if facts.reinit_prefix is None:
        assert name == "mobilenet"
        return
    reset = [k for k in keys if k.startswith(facts.reinit_prefix)]
    assert reset and len(reset) < len(keys)
    assert not any(k.startswith("features.norm5") for k in reset)
    for prefix in facts.own_init_prefixes:  # BAM parameters exist and are outside the reset
        assert any(k.startswith(prefix) for k in keys) and not prefix.startswith(facts.reinit_prefix)


def test_layer4_first_block_and_shortcut_carry_last_stride():
    """VKD sets the stride of layer4[0] (conv1 of a BasicBlock, conv2 of a Bottleneck) and of
    its downsample conv to last_stride."""
    from backends.torch.backbones import build_backbone
    with torch.device("meta"):
        for name, conv in (("resnet18", "conv1"), ("resnet50", "conv2"), ("resnet50bam", "conv2")):
            for last_stride in (1, 2):
                block = build_backbone(name, width=8, last_stride=last_stride).layer4[0]
                assert getattr(block, conv).stride == (last_stride, last_stride)
                assert block.downsample[0].stride == (last_stride, last_stride)
                other = "conv2" if conv == "conv1" else "conv1"
                assert getattr(block, other).stride == (1, 1)


# ---------------------------------------------------------------- both backends

def test_registry_names_alias_and_unknown_name(backend):
    table = backend.backbones.BACKBONES
    assert set(BACKBONE_NAMES) | {"mobilenet_v2"} == set(table)
    assert table["mobilenet_v2"] is table["mobilenet"]
    with pytest.raises(ConfigError, match="unknown backbone 'resnet152'"):
        backend.backbones.build_backbone("resnet152")


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_small_networks_have_torch_names_and_shapes_in_both_backends(name):
    """MindSpore parameter names (BN leaves mapped) and shapes equal torch's, at a small size."""
    pytest.importorskip("mindspore")
    pt, ms_backend = Backend("torch"), Backend("mindspore")
    t_net = pt.backbones.build_backbone(name, **SMALL[name])
    m_net = ms_backend.backbones.build_backbone(name, **SMALL[name])
    t_state, m_state = pt.weights.state_to_numpy(t_net), ms_backend.weights.state_to_numpy(m_net)
    assert {k: v.shape for k, v in m_state.items()} == {k: v.shape for k, v in t_state.items()}
    assert m_net.feat_dim == t_net.feat_dim


def _block_by_hand(backend, block, z, relus):
    """A Bottleneck / BasicBlock evaluated from its own conv and BN modules, with a ReLU after
    bn1, bn2 (Bottleneck only) and the sum where ``relus`` says so; z has no downsample."""
    def stage(conv, bn, x):
        return backend.numpy(bn(conv(backend.tensor(x))))
    relu = [(lambda a: np.maximum(a, 0.0)) if on else (lambda a: a) for on in relus]
    with torch.no_grad():
        out = relu[0](stage(block.conv1, block.bn1, z))
        if hasattr(block, "conv3"):
            out = relu[1](stage(block.conv2, block.bn2, out))
            out = stage(block.conv3, block.bn3, out)
        else:
            out = stage(block.conv2, block.bn2, out)
    return relu[-1](out + z)


@pytest.mark.parametrize("depth", (18, 50))
def test_last_block_relu_false_removes_every_relu_of_the_last_block(backend, depth):
    """The last block computes conv-BN chains with no ReLU at all (3 removed in a Bottleneck,
    2 in a BasicBlock); every other combination of kept ReLUs gives a different output; the
    block before it keeps its ReLU and so does the last block by default; the network output
    then has negative entries."""
    resnet = backend.backbones.ResNet
    net = backend.eval(_randomise_bn_stats(backend, resnet(depth=depth, width=8, last_block_relu=False)))
    block = net.layer4[len(net.layer4) - 1]
    channels = net.feat_dim
    z = np.random.default_rng(1).standard_normal((2, channels, 4, 2)).astype(np.float32)
    got = backend.run(block, z)
    n_relus = 3 if depth == 50 else 2
    combos = [tuple(bool(c >> i & 1) for i in range(n_relus)) for c in range(2 ** n_relus)]
    for relus in combos:
        expected = _block_by_hand(backend, block, z, relus)
        if not any(relus):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        else:
            assert np.abs(got - expected).max() > 1e-2, relus
    assert isinstance(net.layer4[len(net.layer4) - 2].relu, type(net.relu))
    default = backend.eval(_randomise_bn_stats(backend, resnet(depth=depth, width=8)))
    kept = default.layer4[len(default.layer4) - 1]
    np.testing.assert_allclose(backend.run(kept, z), _block_by_hand(backend, kept, z, (True,) * n_relus),
                               rtol=1e-5, atol=1e-5)
    image = np.random.default_rng(2).standard_normal((2, 3, 64, 32)).astype(np.float32)
    assert backend.run(net, image).min() < 0


@pytest.mark.parametrize("name", ("resnet18", "resnet50bam"))
def test_zero_init_residual_zeroes_exactly_the_last_bn_gamma_of_each_block(backend, name):
    last_bn = "bn2" if name == "resnet18" else "bn3"
    build = backend.backbones.build_backbone
    state = backend.weights.state_to_numpy(build(name, width=8, zero_init_residual=True))
    gammas = {k: v for k, v in state.items() if k.endswith(".weight") and v.ndim == 1
              and (k.replace(".weight", ".running_mean") in state)}
    zeroed = sorted(k for k, v in gammas.items() if not v.any())
    blocks = sorted({k.rsplit(".", 2)[0] for k in state if k.startswith("layer") and f".{last_bn}." in k})
    assert zeroed == [f"{b}.{last_bn}.weight" for b in blocks]
    assert len(blocks) == (8 if name == "resnet18" else 16)
    assert all(np.all(v == 1) for k, v in gammas.items() if k not in zeroed)
    default = backend.weights.state_to_numpy(build(name, width=8))
    assert all(np.all(default[k] == 1) for k in gammas)


@pytest.mark.parametrize("last_stride", (1, 2))
def test_mobilenet_block14_stride_and_last_relu6(backend, last_stride):
    """features[14]'s depthwise conv takes last_stride and the block keeps no residual;
    features[18][2] is an identity (VKD) unless last_block_relu."""
    mb = backend.backbones
    net = mb.build_backbone("mobilenet_v2", width_mult=0.25, last_stride=last_stride)
    feats = net.features
    depthwise = [feats[i].conv[len(feats[i].conv) - 3][0] for i in range(1, 18)]  # conv[-3] = dw ConvBNReLU
    assert all(conv.group == conv.in_channels if backend.name == "mindspore" else conv.groups == conv.in_channels
               for conv in depthwise)
    strided = [i for i, conv in enumerate(depthwise, start=1) if np.atleast_1d(conv.stride)[-1] == 2]
    assert strided == ([2, 4, 7] if last_stride == 1 else [2, 4, 7, 14])
    assert feats[14].use_res_connect is False and feats[15].use_res_connect is True
    relu6 = torch.nn.ReLU6 if backend.name == "torch" else importlib.import_module("mindspore.nn").ReLU6
    assert not isinstance(feats[18][2], relu6)
    with_relu = mb.build_backbone("mobilenet", width_mult=0.25, last_block_relu=True)
    assert isinstance(with_relu.features[18][2], relu6)
    out = backend.run(backend.eval(_randomise_bn_stats(backend, net)),
                      np.random.default_rng(0).standard_normal((2, 3, 64, 32)))
    assert out.shape == ((2, 1280, 4, 2) if last_stride == 1 else (2, 1280, 2, 1))
    assert out.min() < 0


def test_densenet_ends_with_norm5_and_no_relu(backend):
    """VKD keeps the children of torchvision's ``features``: the output is norm5's, no ReLU
    (fewer dense layers here: the children's names do not depend on block_config)."""
    net = backend.backbones.build_backbone("densenet121", block_config=(2, 2, 2, 2), **SMALL["densenet121"])
    if backend.name == "torch":
        children = [n for n, _ in net.features.named_children()]
    else:
        children = list(net.features.name_cells())
    assert children == ["conv0", "norm0", "relu0", "pool0", "denseblock1", "transition1", "denseblock2",
                        "transition2", "denseblock3", "transition3", "denseblock4", "norm5"]
    out = backend.run(backend.eval(_randomise_bn_stats(backend, net)),
                      np.random.default_rng(0).standard_normal((2, 3, 64, 32)))
    assert out.shape == (2, net.feat_dim, 2, 1) and out.min() < 0


# ---------------------------------------------------------------- common facts

def test_backbone_facts_aliases_and_unknown_name():
    assert backbone_facts("mobilenet_v2") is BACKBONE_FACTS["mobilenet"]
    url = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
    assert BACKBONE_FACTS["resnet50bam"].imagenet_url == url
    assert BACKBONE_FACTS["densenet121"].ignored_pretrained_prefixes == ("classifier.",)
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16'"):
        backbone_facts("vgg16")


def test_legacy_densenet_keys_are_renamed():
    state = {"features.denseblock1.denselayer1.norm.1.weight": 1,
             "features.denseblock4.denselayer16.conv.2.weight": 2,
             "features.transition1.norm.weight": 3, "features.norm5.running_var": 4}
    assert rename_legacy_densenet_keys(state) == {
        "features.denseblock1.denselayer1.norm1.weight": 1,
        "features.denseblock4.denselayer16.conv2.weight": 2,
        "features.transition1.norm.weight": 3, "features.norm5.running_var": 4}


@pytest.mark.parametrize("name, vkd_key, ours", [
    ("resnet50", "features_layers.0.0.weight", "conv1.weight"),
    ("resnet50", "features_layers.0.1.running_mean", "bn1.running_mean"),
    ("resnet101", "features_layers.3.0.22.conv3.weight", "layer3.22.conv3.weight"),
    ("resnet50bam", "features_layers.1.0.bam.spatial_att.gate_s.gate_s_conv_final.bias",
     "layer1.bam.spatial_att.gate_s.gate_s_conv_final.bias"),
    ("resnet18", "features_layers.4.0.1.bn2.weight", "layer4.1.bn2.weight"),
    ("densenet121", "features_layers.10.denselayer3.conv1.weight",
     "features.denseblock4.denselayer3.conv1.weight"),
    ("densenet121", "features_layers.11.weight", "features.norm5.weight"),
    ("densenet121", "features_layers.5.conv.weight", "features.transition1.conv.weight"),
    ("mobilenet", "features_layers.14.conv.1.0.weight", "features.14.conv.1.0.weight"),
])
def test_vkd_checkpoint_keys_map_to_our_names(name, vkd_key, ours):
    assert vkd_checkpoint_key(name, vkd_key) == ours
    assert ours in full_size_torch(name).state_dict()
    assert vkd_checkpoint_key(name, "classifier.bottleneck.weight") is None
