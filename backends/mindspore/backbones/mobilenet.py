"""MobileNet-V2 trunk as VKD uses it, in MindSpore (twin of backends/torch/backbones/mobilenet.py).

torchvision 0.5's ``mobilenet_v2().features`` (``features.0`` .. ``features.18``, ConvBNReLU
= conv, BN, ReLU6 named ``.0 .1 .2``, inverted residual blocks ``features.N.conv.M``) with
VKD's edits (aimagelab/VKD model/net.py ``get_mobilenet_backbone_layers``): the depthwise conv
of ``features.14`` gets stride ``last_stride`` (the block keeps its construction-time
``use_res_connect``, False), and ``features.18.2`` (the last ReLU6) becomes an identity
unless ``last_block_relu``. Init as torchvision: convs kaiming-normal (fan_out), BN 1 / 0.
"""
from mindspore import nn
from mindspore.common.initializer import HeNormal

from .resnet import batch_norm2d

__all__ = ["MobileNetV2", "InvertedResidual", "INVERTED_RESIDUAL_SETTING", "LAST_STRIDE_BLOCK", "conv_bn_relu",
           "make_divisible"]

# t (expansion), c (output channels), n (blocks), s (stride of the first block)
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LAST_STRIDE_BLOCK = 14  # VKD sets the depthwise stride of features[14] to last_stride
FIRST_CHANNELS, LAST_CHANNELS = 32, 1280


def make_divisible(value, divisor, min_value=None):
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), bumped up one step if rounding lost more than 10%."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv(in_ch, out_ch, kernel, stride=1, groups=1):
    """Bias-free conv, padding (k-1)/2, torchvision MobileNet's kaiming-normal (fan_out)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, pad_mode="pad", padding=(kernel - 1) // 2,
                     group=groups, has_bias=False, weight_init=HeNormal(mode="fan_out", nonlinearity="leaky_relu"))


def conv_bn_relu(in_ch, out_ch, kernel=3, stride=1, groups=1, relu=True):
    """torchvision's ConvBNReLU: conv, BN, ReLU6 (or identity), names ``0 1 2``."""
    return nn.SequentialCell([_conv(in_ch, out_ch, kernel, stride, groups), batch_norm2d(out_ch),
                              nn.ReLU6() if relu else nn.Identity()])


class InvertedResidual(nn.Cell):
    """Expand 1x1 (t != 1) -> depthwise 3x3 (``stride``) -> linear 1x1 projection, plus the input
    when ``use_res_connect`` (decided from the construction-time stride)."""

    def __init__(self, in_ch, out_ch, stride, expand_ratio, depthwise_stride=None):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        cells = [conv_bn_relu(in_ch, hidden, kernel=1)] if expand_ratio != 1 else []
        dw_stride = stride if depthwise_stride is None else depthwise_stride
        cells += [conv_bn_relu(hidden, hidden, stride=dw_stride, groups=hidden),
                  _conv(hidden, out_ch, 1), batch_norm2d(out_ch)]
        self.conv = nn.SequentialCell(cells)

    def construct(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Cell):
    """MobileNet-V2 ``features`` returning (N, feat_dim, h, w); total stride 16 at
    ``last_stride`` 1 (VKD's default), 32 at 2. Size knob: ``width_mult`` (1.0 =
    torchvision), rounded by ``round_nearest``; both change parameter shapes; ``feat_dim`` =
    ``make_divisible(1280 * max(1, width_mult))``. ``last_block_relu`` keeps
    ``features.18.2`` a ReLU6; the default False is VKD's network."""

    def __init__(self, last_stride=1, width_mult=1.0, round_nearest=8, last_block_relu=False):
        super().__init__()
        in_ch = make_divisible(FIRST_CHANNELS * width_mult, round_nearest)
        self.feat_dim = make_divisible(LAST_CHANNELS * max(1.0, width_mult), round_nearest)
        features = [conv_bn_relu(3, in_ch, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_ch = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                dw = last_stride if len(features) == LAST_STRIDE_BLOCK else None
                features.append(InvertedResidual(in_ch, out_ch, stride, t, depthwise_stride=dw))
                in_ch = out_ch
        features.append(conv_bn_relu(in_ch, self.feat_dim, kernel=1, relu=last_block_relu))
        self.features = nn.SequentialCell(features)

    def construct(self, x):
        return self.features(x)
