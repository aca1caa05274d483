"""OSNet (Zhou et al., ICCV 2019) with MTDA-KD-REID's head, MindSpore backend.

Mirrors ``backends/torch/backbones/osnet.py`` name for name: trunk and parameter names of
KaiyangZhou/deep-person-reid ``torchreid/models/osnet.py`` (plain ``osnet_x*``, no
instance norm), head and outputs of fremigereau/MTDA_KD_REID ``torchreid/models/osnet.py``
(``feat`` Dense + ``feat_bn`` BatchNorm1d without ReLU instead of torchreid's 512-d
``fc`` with ReLU; L2-normalised eval feature). See the torch module for the differences.
``construct`` returns ``(logits, embedding)``; :meth:`OSNet.extract` the test feature.

BatchNorm: eps 1e-5, MindSpore momentum 0.9 (== torch 0.1); leaves gamma/beta/moving_mean/
moving_variance map to torch names through ``common.weights``. A Cell starts in inference
mode: call ``set_train(True)`` for batch statistics.
"""
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal, Normal

from common.kdreid_models import (DEFAULT_FC_DIM, OSNET_BLOCKS_PER_STAGE, OSNET_BOTTLENECK_REDUCTION,
                                  OSNET_CHANNELS, OSNET_GATE_REDUCTION, OSNET_STREAM_DEPTHS)

__all__ = ["OSNet", "OSBlock", "ChannelGate", "LightConv3x3", "ConvBN", "build_osnet"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # MindSpore convention: 1 - torch momentum (torch 0.1)
NORM_EPS = 1e-12   # floor of torch.nn.functional.normalize


def _conv(in_ch, out_ch, kernel, stride=1, padding=0, group=1, bias=False):
    """Conv2d with torch-style explicit padding, kaiming-normal (fan_out, relu) weights and
    zero bias (when ``bias``)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, pad_mode="pad", padding=padding,
                     group=group, has_bias=bias, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"),
                     bias_init="zeros" if bias else None)


def _bn2d(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="ones", beta_init="zeros")


def _dense(in_dim, out_dim):
    """Dense with weights normal(0, 0.01) and zero bias (the reference's Linear init)."""
    return nn.Dense(in_dim, out_dim, weight_init=Normal(sigma=0.01), bias_init="zeros")


def l2_normalize_rows(x):
    """x / max(||x||_2, 1e-12) row-wise, as torch.nn.functional.normalize(p=2, dim=1)."""
    return x / ops.clamp(ops.norm(x, dim=1, keepdim=True), min=NORM_EPS)


class ConvBN(nn.Cell):
    """``conv`` (bias-free) -> ``bn`` -> optional ReLU (torchreid ConvLayer / Conv1x1 /
    Conv1x1Linear); parameter names ``conv.weight``, ``bn.*``."""

    def __init__(self, in_ch, out_ch, kernel=1, stride=1, padding=0, relu=True):
        super().__init__()
        self.conv = _conv(in_ch, out_ch, kernel, stride=stride, padding=padding)
        self.bn = _bn2d(out_ch)
        self.use_relu = relu

    def construct(self, x):
        x = self.bn(self.conv(x))
        if self.use_relu:
            x = ops.relu(x)
        return x


class LightConv3x3(nn.Cell):
    """Lite 3x3: pointwise ``conv1`` (linear), depthwise 3x3 ``conv2``, ``bn``, ReLU."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv1 = _conv(in_ch, out_ch, 1)
        self.conv2 = _conv(out_ch, out_ch, 3, padding=1, group=out_ch)
        self.bn = _bn2d(out_ch)

    def construct(self, x):
        return ops.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Cell):
    """x * sigmoid(fc2(relu(fc1(avgpool(x))))), 1x1 convs with bias: ``fc1`` C -> C // 16,
    ``fc2`` C // 16 -> C."""

    def __init__(self, channels, reduction=OSNET_GATE_REDUCTION):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"ChannelGate needs at least {reduction} channels, got {channels}")
        self.fc1 = _conv(channels, hidden, 1, bias=True)
        self.fc2 = _conv(hidden, channels, 1, bias=True)

    def construct(self, x):
        w = ops.mean(x, (2, 3), keep_dims=True)
        return x * ops.sigmoid(self.fc2(ops.relu(self.fc1(w))))


class OSBlock(nn.Cell):
    """Omni-scale residual block (see the torch twin): ``conv1``; streams ``conv2a`` (one
    lite layer), ``conv2b``/``conv2c``/``conv2d`` (2, 3, 4 layers) through the shared
    ``gate``, summed; linear ``conv3``; shortcut (``downsample`` when in != out); ReLU."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        mid = out_ch // OSNET_BOTTLENECK_REDUCTION
        self.conv1 = ConvBN(in_ch, mid)
        streams = [nn.SequentialCell([LightConv3x3(mid, mid) for _ in range(depth)])
                   for depth in OSNET_STREAM_DEPTHS[1:]]
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b, self.conv2c, self.conv2d = streams
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBN(mid, out_ch, relu=False)
        self.downsample = ConvBN(in_ch, out_ch, relu=False) if in_ch != out_ch else None

    def construct(self, x):
        x1 = self.conv1(x)
        x2 = (self.gate(self.conv2a(x1)) + self.gate(self.conv2b(x1))
              + self.gate(self.conv2c(x1)) + self.gate(self.conv2d(x1)))
        identity = x
        if self.downsample is not None:
            identity = self.downsample(x)
        return ops.relu(self.conv3(x2) + identity)


def _stage(in_ch, out_ch, blocks, reduce):
    """OSBlocks, then (``reduce``) a ReLU 1x1 conv and 2x2 average pool at index ``blocks``."""
    layers = [OSBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(blocks)]
    if reduce:
        layers.append(nn.SequentialCell([ConvBN(out_ch, out_ch), nn.AvgPool2d(kernel_size=2, stride=2)]))
    return nn.SequentialCell(layers)


class OSNet(nn.Cell):
    """OSNet trunk + MTDA head; same structure, names, attributes (``channels``,
    ``pooled_dim``, ``fc_dim``, ``feat_dim``) and init as the torch twin."""

    def __init__(self, num_classes, channels=OSNET_CHANNELS["osnet_x1_0"], fc_dim=DEFAULT_FC_DIM,
                 blocks=OSNET_BLOCKS_PER_STAGE):
        super().__init__()
        c = tuple(int(v) for v in channels)
        if len(c) != 4 or len(tuple(blocks)) != 3:
            raise ValueError(f"OSNet needs 4 channels and 3 block counts, got {c} and {tuple(blocks)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.channels = c
        self.pooled_dim = c[3]
        self.fc_dim = int(fc_dim) if fc_dim and fc_dim > 0 else 0
        self.feat_dim = self.fc_dim or self.pooled_dim
        self.conv1 = ConvBN(3, c[0], kernel=7, stride=2, padding=3)
        # 3x3/2 max pool with implicit -inf padding 1, equal to torch's max_pool2d(3, 2, 1)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        self.conv2 = _stage(c[0], c[1], blocks[0], reduce=True)
        self.conv3 = _stage(c[1], c[2], blocks[1], reduce=True)
        self.conv4 = _stage(c[2], c[3], blocks[2], reduce=False)
        self.conv5 = ConvBN(c[3], c[3])
        self.feat = _dense(self.pooled_dim, self.fc_dim) if self.fc_dim else None
        self.feat_bn = nn.BatchNorm1d(self.fc_dim, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="ones",
                                      beta_init="zeros") if self.fc_dim else None
        self.classifier = _dense(self.feat_dim, num_classes)

    def featuremaps(self, x):
        """conv5 output (N, channels[3], H/16, W/16) (torchreid ``featuremaps``)."""
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def construct(self, x):
        """(logits (N, num_classes), embedding (N, feat_dim)): the embedding is MTDA's
        ``v`` (post-``feat_bn``, pre-classifier, not normalised)."""
        v = ops.mean(self.featuremaps(x), (2, 3))
        if self.feat is not None:
            v = self.feat_bn(self.feat(v))
        return self.classifier(v), v

    def extract(self, x):
        """Test feature: the L2-normalised embedding (MTDA's eval-mode output; call
        ``set_train(False)`` first for the reference's behaviour)."""
        return l2_normalize_rows(self.construct(x)[1])


def build_osnet(name, num_classes, fc_dim=DEFAULT_FC_DIM, channels=None, **kwargs):
    """OSNet ``name`` (a key of ``OSNET_CHANNELS``); ``channels`` overrides its width."""
    if name not in OSNET_CHANNELS:
        raise ValueError(f"unknown OSNet {name!r}: expected one of {', '.join(OSNET_CHANNELS)}")
    return OSNet(num_classes, channels=channels or OSNET_CHANNELS[name], fc_dim=fc_dim, **kwargs)
