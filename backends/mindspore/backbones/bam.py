"""VKD's ResNet-50/101 with Bottleneck Attention Modules in MindSpore (twin of
backends/torch/backbones/bam.py; follows aimagelab/VKD model/cbam/bam.py and resnet_bam.py).

One BAM is appended to layer1, layer2 and layer3 (after their residual blocks, as the cell
``layerN.bam``), none to layer4. BAM(x) = ``(1 + sigmoid(Mc(x) * Ms(x))) * x`` with the
channel gate Mc (global average pool, Dense C -> C/16, BatchNorm1d, ReLU, Dense C/16 -> C)
and the spatial gate Ms (1x1 conv C -> C/16, BN, ReLU, two 3x3 convs with dilation 4 and
padding 4 each followed by BN and ReLU, 1x1 conv to one channel); every gate conv and Dense
has a bias. Parameter names are the reference's (``layer1.bam.channel_att.gate_c.gate_c_fc_0``,
``gate_c_bn_1``, ``gate_c_fc_final``, ``layer1.bam.spatial_att.gate_s.gate_s_conv_reduce0``,
``gate_s_bn_reduce0``, ``gate_s_conv_di_0/1``, ``gate_s_bn_di_0/1``, ``gate_s_conv_final``)
after the BatchNorm leaf mapping of ``common.weights``. Initialisation as the reference:
gate convs kaiming-normal (fan_out), Dense weights torch's default (kaiming-uniform with
a = sqrt(5)), BN weight 1, every bias 0.
"""
import math
from collections import OrderedDict

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal, HeUniform

from .resnet import BN_EPS, BN_MOMENTUM, ResNet, batch_norm2d

__all__ = ["BAM", "BAMResNet", "ChannelGate", "SpatialGate", "BAM_REDUCTION", "BAM_DILATION"]

BAM_REDUCTION = 16  # channel reduction of both gates
BAM_DILATION = 4    # dilation (and padding) of the spatial gate's two 3x3 convolutions


def _dense(in_dim, out_dim):
    """Dense with torch's default Linear weight init and a zero bias (as the reference)."""
    return nn.Dense(in_dim, out_dim, weight_init=HeUniform(negative_slope=math.sqrt(5)), bias_init="zeros")


def _gate_conv(in_ch, out_ch, kernel, dilation=1):
    """Conv2d with bias 0, kaiming-normal (fan_out) weight, torch-style padding ``dilation * (k-1)/2``."""
    return nn.Conv2d(in_ch, out_ch, kernel, pad_mode="pad", padding=dilation * (kernel - 1) // 2,
                     dilation=dilation, has_bias=True, bias_init="zeros",
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


class ChannelGate(nn.Cell):
    """Mc(x): (N, C, H, W) -> (N, C, 1, 1) channel attention logits (reference bam.py)."""

    def __init__(self, channels, reduction=BAM_REDUCTION):
        super().__init__()
        hidden = channels // reduction
        self.gate_c = nn.SequentialCell(OrderedDict([
            ("flatten", nn.Flatten()),
            ("gate_c_fc_0", _dense(channels, hidden)),
            ("gate_c_bn_1", nn.BatchNorm1d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM,
                                           gamma_init="ones", beta_init="zeros")),
            ("gate_c_relu_1", nn.ReLU()),
            ("gate_c_fc_final", _dense(hidden, channels)),
        ]))

    def construct(self, x):
        logits = self.gate_c(x.mean(axis=(2, 3)))
        return logits.reshape(logits.shape[0], logits.shape[1], 1, 1)


class SpatialGate(nn.Cell):
    """Ms(x): (N, C, H, W) -> (N, 1, H, W) spatial attention logits (reference bam.py)."""

    def __init__(self, channels, reduction=BAM_REDUCTION, dilation=BAM_DILATION):
        super().__init__()
        hidden = channels // reduction
        cells = [("gate_s_conv_reduce0", _gate_conv(channels, hidden, 1)),
                 ("gate_s_bn_reduce0", batch_norm2d(hidden)),
                 ("gate_s_relu_reduce0", nn.ReLU())]
        for i in range(2):
            cells += [(f"gate_s_conv_di_{i}", _gate_conv(hidden, hidden, 3, dilation)),
                      (f"gate_s_bn_di_{i}", batch_norm2d(hidden)),
                      (f"gate_s_relu_di_{i}", nn.ReLU())]
        cells.append(("gate_s_conv_final", _gate_conv(hidden, 1, 1)))
        self.gate_s = nn.SequentialCell(OrderedDict(cells))

    def construct(self, x):
        return self.gate_s(x)


class BAM(nn.Cell):
    """y = (1 + sigmoid(Mc(x) * Ms(x))) * x, the product broadcast to (N, C, H, W)."""

    def __init__(self, channels):
        super().__init__()
        self.channel_att = ChannelGate(channels)
        self.spatial_att = SpatialGate(channels)

    def construct(self, x):
        return (1 + ops.sigmoid(self.channel_att(x) * self.spatial_att(x))) * x


class BAMResNet(ResNet):
    """:class:`ResNet` with a BAM after layer1, layer2 and layer3 (``layerN.bam``).

    Same options as :class:`ResNet` (``last_stride``, ``last_block_relu``,
    ``zero_init_residual``; no ShallowCAM). Size knob: ``width`` (64 = the reference) changes
    every parameter shape; the BAM of layer N has ``width * 2**(N-1) * expansion`` channels
    and a hidden width of that over 16, so ``width`` must be at least 4 for ResNet-50/101.
    """

    def __init__(self, depth=50, last_stride=1, width=64, last_block_relu=True, zero_init_residual=False):
        super().__init__(depth=depth, last_stride=last_stride, width=width,
                         last_block_relu=last_block_relu, zero_init_residual=zero_init_residual)

    def _stage_tail(self, index, channels):
        return ("bam", BAM(channels)) if index < 4 else None
