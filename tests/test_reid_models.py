"""KD-REID models (OSNet x1_0..x0_25, MTDA ResNet-50): sizes against the reference
definitions, torchreid parameter names, loading ImageNet / reference checkpoints by name,
and the outputs' contract. References: fremigereau/MTDA_KD_REID torchreid/models/
{osnet,resnet}.py (heads, outputs), KaiyangZhou/deep-person-reid torchreid/models/osnet.py
(trunk, names)."""
import numpy as np
import pytest
import torch

from backends.torch.backbones import REID_MODELS, build_reid_model, load_pretrained_by_name
from backends.torch.backbones.osnet import ChannelGate, OSNet
from backends.torch.backbones.resnet import ResNet
from backends.torch.weights import state_to_numpy
from common.kdreid_models import (DEFAULT_FC_DIMS, IMAGENET_FILES, OSNET_CHANNELS, REID_MODEL_NAMES,
                                  embedding_dim, match_state_by_name)

NUM_CLASSES = 751  # Market-1501 training identities
BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# Trainable parameters with MTDA's head (fc_dim 2048) and 751 classes, by the reference's
# definitions. OSNet, per stage, channels c0..c3, m = out // 4 (mid), r = m // 16 (gate):
#   conv1: 3*c0*49 + 2*c0
#   OSBlock(i, o): i*m + 2m (conv1) + 10*(m*m + 9m + 2m) (ten lite 3x3: 1+2+3+4)
#                  + 2*m*r + r + m (gate, biased 1x1 convs) + m*o + 2o (conv3)
#                  + [i*o + 2o] (downsample, when i != o)
#   transition (conv2, conv3): o*o + 2o;  conv5: c3*c3 + 2*c3
#   head: c3*2048 + 2048 (feat) + 2*2048 (feat_bn) + 2048*751 + 751 (classifier) = c3*2048 + 1544943
# osnet_x0_25 (16, 64, 96, 128):
#   conv1 2384
#   conv2 6961 (16->64: 288 + 4320 + 49 + 1152 + 1152) + 6577 + 4224 = 17762
#   conv3 18889 (64->96: 1584 + 8400 + 73 + 2496 + 6336) + 13321 + 9408 = 41618
#   conv4 33954 (96->128, r=2: 3136 + 13760 + 162 + 4352 + 12544) + 22434 = 56388
#   conv5 16640 -> trunk 134792; head 128*2048 + 1544943 = 1807087; total 1941879
# (torchreid's own head, fc 512 + 1000 classes, gives 714864, its published ~0.2M trunk.)
# Same arithmetic for the wider ones (trunk stages conv1, conv2, conv3, conv4, conv5):
#   osnet_x1_0:  9536 + 234632 + 592332 + 806160 + 263168 = 1905828; + 512*2048 + 1544943
#   osnet_x0_75: 7152 + 135078 + 337688 + 459468 + 148224 = 1087610; + 384*2048 + 1544943
#   osnet_x0_5:  4768 + 62788 + 154278 + 209544 + 66048 = 497426;    + 256*2048 + 1544943
# resnet50: torchvision's 25557032 - 2049000 (its fc) = 23508032 trunk; + 2048*2048 + 2048
#   (feat) + 4096 (feat_bn) + 1538799 (classifier) = 29247279. (MTDA students built with
#   teacher_arch add 5578240 for feat_matcher_list, not built here.)
REFERENCE_PARAMS = {
    "osnet_x1_0": 1905828 + 512 * 2048 + 1544943,    # 4499347
    "osnet_x0_75": 1087610 + 384 * 2048 + 1544943,   # 3418985
    "osnet_x0_5": 497426 + 256 * 2048 + 1544943,     # 2566657
    "osnet_x0_25": 134792 + 128 * 2048 + 1544943,    # 1941879
    "resnet50": 23508032 + 2048 * 2048 + 2048 + 4096 + 2048 * NUM_CLASSES + NUM_CLASSES,  # 29247279
}

# Representative keys (and shapes) of torchreid's osnet_x0_25 / osnet_x1_0 state dicts.
TORCHREID_KEYS = {
    "osnet_x0_25": {
        "conv1.conv.weight": (16, 3, 7, 7), "conv1.bn.running_var": (16,),
        "conv2.0.conv1.conv.weight": (16, 16, 1, 1), "conv2.0.conv2a.conv2.weight": (16, 1, 3, 3),
        "conv2.0.conv2d.3.bn.weight": (16,), "conv2.0.gate.fc1.weight": (1, 16, 1, 1),
        "conv2.0.gate.fc2.bias": (16,), "conv2.0.conv3.conv.weight": (64, 16, 1, 1),
        "conv2.0.downsample.conv.weight": (64, 16, 1, 1), "conv2.1.conv2c.2.conv1.weight": (16, 16, 1, 1),
        "conv2.2.0.conv.weight": (64, 64, 1, 1), "conv3.0.downsample.bn.running_mean": (96,),
        "conv3.2.0.bn.bias": (96,), "conv4.0.conv2b.1.conv2.weight": (32, 1, 3, 3),
        "conv4.1.gate.fc1.weight": (2, 32, 1, 1), "conv5.conv.weight": (128, 128, 1, 1), "conv5.bn.weight": (128,),
    },
    "osnet_x1_0": {
        "conv1.conv.weight": (64, 3, 7, 7), "conv2.0.conv2a.conv2.weight": (64, 1, 3, 3),
        "conv2.0.gate.fc1.weight": (4, 64, 1, 1), "conv2.0.downsample.conv.weight": (256, 64, 1, 1),
        "conv2.2.0.conv.weight": (256, 256, 1, 1), "conv3.0.downsample.bn.running_mean": (384,),
        "conv4.0.conv2b.1.conv2.weight": (128, 1, 3, 3), "conv4.1.gate.fc1.weight": (8, 128, 1, 1),
        "conv5.conv.weight": (512, 512, 1, 1), "conv5.bn.weight": (512,),
    },
}
ABSENT_KEYS = ("conv2.1.downsample.conv.weight", "conv4.2.0.conv.weight", "fc.0.weight", "conv2.0.IN.weight")


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_full_size_parameter_count_matches_reference(name):
    torch.manual_seed(0)
    assert _count(build_reid_model(name, NUM_CLASSES)) == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TORCHREID_KEYS))
def test_torchreid_key_names_and_shapes(name):
    state = build_reid_model(name, NUM_CLASSES).state_dict()
    assert {k: tuple(state[k].shape) for k in TORCHREID_KEYS[name] if k in state} == TORCHREID_KEYS[name]
    assert not [k for k in ABSENT_KEYS if k in state]
    head = {k: tuple(v.shape) for k, v in state.items() if k.startswith(("feat", "classifier"))}
    c3 = OSNET_CHANNELS[name][3]
    assert head == {"feat.weight": (2048, c3), "feat.bias": (2048,), "feat_bn.weight": (2048,),
                    "feat_bn.bias": (2048,), "feat_bn.running_mean": (2048,), "feat_bn.running_var": (2048,),
                    "feat_bn.num_batches_tracked": (), "classifier.weight": (NUM_CLASSES, 2048),
                    "classifier.bias": (NUM_CLASSES,)}


def torchreid_osnet_layout(channels, fc=512, classes=1000):
    """Name -> shape of a torchreid OSNet ImageNet state dict (written out by rule)."""
    shapes = {}

    def bn(p, c):
        shapes.update({f"{p}.{leaf}": ((c,) if leaf != "num_batches_tracked" else ()) for leaf in BN_LEAVES})

    def conv_bn(p, cin, cout, k):
        shapes[f"{p}.conv.weight"] = (cout, cin, k, k)
        bn(f"{p}.bn", cout)

    def lite(p, c):
        shapes.update({f"{p}.conv1.weight": (c, c, 1, 1), f"{p}.conv2.weight": (c, 1, 3, 3)})
        bn(f"{p}.bn", c)

    def block(p, cin, cout):
        m = cout // 4
        conv_bn(f"{p}.conv1", cin, m, 1)
        lite(f"{p}.conv2a", m)
        for stream, depth in (("b", 2), ("c", 3), ("d", 4)):
            for i in range(depth):
                lite(f"{p}.conv2{stream}.{i}", m)
        shapes.update({f"{p}.gate.fc1.weight": (m // 16, m, 1, 1), f"{p}.gate.fc1.bias": (m // 16,),
                       f"{p}.gate.fc2.weight": (m, m // 16, 1, 1), f"{p}.gate.fc2.bias": (m,)})
        conv_bn(f"{p}.conv3", m, cout, 1)
        if cin != cout:
            conv_bn(f"{p}.downsample", cin, cout, 1)

    c = channels
    conv_bn("conv1", 3, c[0], 7)
    for stage, (cin, cout, reduce) in zip((2, 3, 4), ((c[0], c[1], 1), (c[1], c[2], 1), (c[2], c[3], 0))):
        block(f"conv{stage}.0", cin, cout)
        block(f"conv{stage}.1", cout, cout)
        if reduce:
            conv_bn(f"conv{stage}.2.0", cout, cout, 1)
    conv_bn("conv5", c[3], c[3], 1)
    shapes.update({"fc.0.weight": (fc, c[3]), "fc.0.bias": (fc,)})
    bn("fc.1", fc)
    shapes.update({"classifier.weight": (classes, fc), "classifier.bias": (classes,)})
    return shapes


def random_state(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (np.array(7, np.int64) if s == () else rng.standard_normal(s).astype(np.float32))
            for k, s in shapes.items()}


HEAD_REASONS = {"fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias", "fc.1.running_mean",
                "fc.1.running_var", "classifier.weight", "classifier.bias"}


def test_synthetic_osnet_imagenet_loads_every_trunk_key_and_reports_the_head():
    model = build_reid_model("osnet_x0_25", NUM_CLASSES)
    imagenet = random_state(torchreid_osnet_layout(OSNET_CHANNELS["osnet_x0_25"]))
    report = load_pretrained_by_name(model, imagenet)
    ours = state_to_numpy(model)
    trunk = {k for k in ours if not k.startswith(("feat", "classifier"))}
    expected = {k for k in imagenet if not k.endswith("num_batches_tracked")} - HEAD_REASONS
    assert set(report.loaded) == trunk == expected and len(trunk) == 479
    assert dict(report.skipped).keys() == HEAD_REASONS
    assert dict(report.skipped)["classifier.weight"] == f"shape (1000, 512) != model ({NUM_CLASSES}, 2048)"
    assert dict(report.skipped)["fc.0.weight"] == "not in model"
    assert set(report.untouched) == set(ours) - trunk
    assert all(np.array_equal(ours[k], imagenet[k]) for k in trunk)
    assert "loaded 479 keys, skipped 8" in report.summary()


def test_synthetic_osnet_imagenet_loads_into_mindspore_too():
    pytest.importorskip("mindspore")
    from backends.mindspore.backbones import build_reid_model as ms_build, load_pretrained_by_name as ms_load
    from backends.mindspore.weights import state_to_numpy as ms_state
    model = ms_build("osnet_x0_25", NUM_CLASSES)
    imagenet = random_state(torchreid_osnet_layout(OSNET_CHANNELS["osnet_x0_25"]), seed=1)
    report = ms_load(model, imagenet)
    ours = ms_state(model)
    trunk = {k for k in ours if not k.startswith(("feat", "classifier"))}
    assert set(report.loaded) == trunk and dict(report.skipped).keys() == HEAD_REASONS
    assert all(np.array_equal(ours[k], imagenet[k]) for k in trunk)
    count = sum(int(np.prod(p.shape)) for p in model.trainable_params())
    assert count == REFERENCE_PARAMS["osnet_x0_25"]


def test_resnet50_loads_torchvision_and_mtda_checkpoint_layouts():
    model = build_reid_model("resnet50", 5, width=8, fc_dim=16)
    trunk_names = state_to_numpy(ResNet(depth=50, width=8, last_stride=2))
    torchvision = dict(random_state({k: v.shape for k, v in trunk_names.items()}),
                       **{"fc.weight": np.zeros((1000, 256), np.float32), "fc.bias": np.zeros(1000, np.float32)})
    report = load_pretrained_by_name(model, torchvision)
    assert set(report.loaded) == set(trunk_names) and [k for k, _ in report.skipped] == ["fc.weight", "fc.bias"]
    assert set(report.untouched) == {"feat.weight", "feat.bias", "feat_bn.weight", "feat_bn.bias",
                                     "feat_bn.running_mean", "feat_bn.running_var", "classifier.weight",
                                     "classifier.bias"}
    # an MTDA checkpoint saved from nn.DataParallel, with the teacher's margin buffers
    mtda = {f"module.{k}": v + 1 for k, v in state_to_numpy(model).items()}
    mtda.update({f"module.margin{i}": np.zeros((1, 32 * 2 ** i, 1, 1), np.float32) for i in (1, 2, 3, 4)})
    report = load_pretrained_by_name(model, mtda)
    assert len(report.loaded) == len(state_to_numpy(model)) and not report.untouched
    assert sorted(k for k, _ in report.skipped) == [f"module.margin{i}" for i in (1, 2, 3, 4)]
    assert np.array_equal(state_to_numpy(model)["feat.weight"], mtda["module.feat.weight"])


def test_torch_and_mindspore_names_and_shapes_agree_at_small_size():
    pytest.importorskip("mindspore")
    from backends.mindspore.backbones import REID_MODELS as MS_MODELS
    from backends.mindspore.weights import state_to_numpy as ms_state
    assert sorted(MS_MODELS) == sorted(REID_MODELS) == sorted(REID_MODEL_NAMES)
    small = dict(channels=(8, 64, 64, 64), fc_dim=16, blocks=(2, 1, 1))
    for name, kwargs in (("osnet_x0_25", small), ("osnet_x1_0", dict(small, fc_dim=0)),
                         ("resnet50", dict(width=8, fc_dim=16))):
        t_shapes = {k: v.shape for k, v in state_to_numpy(REID_MODELS[name](5, **kwargs)).items()}
        m_shapes = {k: v.shape for k, v in ms_state(MS_MODELS[name](5, **kwargs)).items()}
        assert t_shapes == m_shapes, name


def test_forward_outputs_and_test_feature():
    torch.manual_seed(0)
    net = OSNet(5, channels=(8, 64, 64, 64), fc_dim=16, blocks=(1, 1, 1))
    x = torch.randn(3, 3, 64, 32)
    net.train()
    logits, emb = net(x)
    assert logits.shape == (3, 5) and emb.shape == (3, 16)
    # the embedding is feat_bn(feat(pooled)) with batch statistics: zero mean per dimension
    assert torch.allclose(emb.mean(0), net.feat_bn.bias, atol=1e-5)
    net.eval()
    with torch.no_grad():
        emb = net(x)[1]
        feature = net.extract(x)
    assert torch.allclose(feature, emb / emb.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(net.classifier(emb), net(x)[0].detach())
    no_fc = OSNet(5, channels=(8, 64, 64, 64), fc_dim=0, blocks=(1, 1, 1)).eval()
    assert not hasattr(no_fc, "feat") and no_fc(x)[1].shape == (3, 64) and no_fc.feat_dim == 64


def test_facts_and_errors():
    assert IMAGENET_FILES["osnet_x0_25"] == "osnet_x0_25_imagenet.pth"
    assert IMAGENET_FILES["resnet50"] == "resnet50-19c8e357.pth"
    assert DEFAULT_FC_DIMS == {n: 2048 for n in ("osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "resnet50")}
    assert embedding_dim("osnet_x0_25") == 2048 and embedding_dim("osnet_x0_25", 0) == 128
    assert embedding_dim("resnet50", 0) == 2048
    assert match_state_by_name({"a.weight": (2,)}, {"module.a.weight": (2,), "a.num_batches_tracked": ()}).loaded == ("a.weight",)
    with pytest.raises(ValueError, match="unknown re-ID model 'osnet_x2'"):
        build_reid_model("osnet_x2", 5)
    with pytest.raises(ValueError, match="at least 16 channels"):
        ChannelGate(8)


# Golden outputs of fremigereau/MTDA_KD_REID torchreid/models/osnet.py
# (OSNet(5, layers=[2, 1, 1], channels=[8, 64, 64, 64], fc_dim=16, loss='kd_reid')) with the
# weights of deterministic_state and input default_rng(1).standard_normal((2, 3, 64, 32)):
# eval-mode output (the normalised feature, first 6 columns), train-mode (y, v) with BN in
# eval mode ("eval logits"), and train-mode (y, v) with batch statistics.
GOLDEN_KWARGS = dict(num_classes=5, channels=(8, 64, 64, 64), fc_dim=16, blocks=(2, 1, 1))
GOLDEN_EXTRACT = [[0.068352, -0.084993, -0.22799, -0.042103, 0.125111, 0.016813],
                  [0.063554, -0.087525, -0.228713, -0.037911, 0.126311, 0.018698]]
GOLDEN_EVAL_LOGITS = [[-4.76674, -2.104196, 3.078558, -2.381241, 1.050945],
                      [-5.036072, -2.218266, 3.218652, -2.560193, 1.187343]]
GOLDEN_TRAIN_LOGITS = [[-1.809409, -1.651358, 0.220338, -0.944991, 0.652681],
                       [1.943494, 1.611546, -0.258007, 0.726933, -0.350232]]
GOLDEN_TRAIN_EMB = [[-1.028347, -1.070133, -0.761908, -0.957283, -0.883415, 0.608054],
                    [1.065761, 1.272216, 0.860796, 0.873887, 0.865978, -0.518583]]


def deterministic_state(shapes):
    """Weights by sorted name: BN scales/variances U(0.5, 1.5), BN means and biases
    N(0, 0.1), other weights N(0, 1/fan_in)."""
    rng, out = np.random.default_rng(0), {}
    for k in sorted(shapes):
        s = tuple(shapes[k])
        if k.endswith("running_var") or (k.endswith(".weight") and len(s) == 1):
            out[k] = rng.uniform(0.5, 1.5, s)
        elif k.endswith(("running_mean", ".bias")):
            out[k] = rng.normal(0.0, 0.1, s)
        else:
            out[k] = rng.normal(0.0, 1.0 / np.sqrt(np.prod(s[1:])), s)
    return {k: v.astype(np.float32) for k, v in out.items()}


def _rel(a, b):
    b = np.asarray(b, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_osnet_matches_mtda_reference_outputs_torch():
    from backends.torch.weights import load_numpy_state
    from tests.parity.tolerances import FORWARD_MAX_REL
    net = OSNet(**GOLDEN_KWARGS)
    load_numpy_state(net, deterministic_state({k: v.shape for k, v in state_to_numpy(net).items()}))
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 64, 32)).astype(np.float32))
    with torch.no_grad():
        net.eval()
        feature, (logits, _) = net.extract(x), net(x)
        net.train()
        train_logits, train_emb = net(x)
    assert _rel(feature[:, :6], GOLDEN_EXTRACT) <= FORWARD_MAX_REL
    assert _rel(logits, GOLDEN_EVAL_LOGITS) <= FORWARD_MAX_REL
    assert _rel(train_logits, GOLDEN_TRAIN_LOGITS) <= FORWARD_MAX_REL
    assert _rel(train_emb[:, :6], GOLDEN_TRAIN_EMB) <= FORWARD_MAX_REL


def test_osnet_matches_mtda_reference_outputs_mindspore():
    ms = pytest.importorskip("mindspore")
    from backends.mindspore.backbones.osnet import OSNet as MsOSNet
    from backends.mindspore.weights import load_numpy_state, state_to_numpy as ms_state
    from tests.parity.tolerances import FORWARD_MAX_REL, TRAIN_MAX_REL
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = MsOSNet(**GOLDEN_KWARGS)
    load_numpy_state(net, deterministic_state({k: v.shape for k, v in ms_state(net).items()}))
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 32)).astype(np.float32))
    net.set_train(False)
    feature, logits = net.extract(x).asnumpy(), net(x)[0].asnumpy()
    net.set_train(True)
    train_logits, train_emb = (o.asnumpy() for o in net(x))
    assert _rel(feature[:, :6], GOLDEN_EXTRACT) <= FORWARD_MAX_REL
    assert _rel(logits, GOLDEN_EVAL_LOGITS) <= FORWARD_MAX_REL
    assert _rel(train_logits, GOLDEN_TRAIN_LOGITS) <= TRAIN_MAX_REL
    assert _rel(train_emb[:, :6], GOLDEN_TRAIN_EMB) <= TRAIN_MAX_REL


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_full_size_parameter_count_matches_reference_mindspore(name):
    pytest.importorskip("mindspore")
    from backends.mindspore.backbones import build_reid_model as ms_build
    model = ms_build(name, NUM_CLASSES)
    assert sum(int(np.prod(p.shape)) for p in model.trainable_params()) == REFERENCE_PARAMS[name]
