"""MobileNet-V2 trunk as VKD uses it: torchvision 0.5's ``mobilenet_v2().features`` with
VKD's two edits (aimagelab/VKD model/net.py ``get_mobilenet_backbone_layers``).

torchvision (mobilenet.py, v0.5): ``features.0`` = ConvBNReLU(3, 32, stride 2); then the
inverted residual blocks of the (t, c, n, s) table below, ``features.1`` .. ``features.17``,
each ``features.N.conv`` = [ConvBNReLU 1x1 expand (when t != 1)], ConvBNReLU 3x3 depthwise
(carries the stride), Conv2d 1x1, BatchNorm; the block adds its input when stride 1 and
in == out channels; ``features.18`` = ConvBNReLU(320, 1280, 1x1). ConvBNReLU = Sequential
(Conv2d no bias, BatchNorm2d, ReLU6), names ``.0`` ``.1`` ``.2``. Channels are rounded by
torchvision's ``_make_divisible`` (``round_nearest`` 8).

VKD's edits: the depthwise conv of ``features.14`` (the first 160-channel block, stride 2)
gets stride ``last_stride``; the block keeps its construction-time ``use_res_connect``
(False: 96 -> 160 channels), exactly as VKD's in-place stride change does. And
``features.18.2`` (the last ReLU6) becomes an identity (``last_block_relu=False``).
Init as torchvision: convs kaiming-normal (fan_out), BN weight 1 and bias 0.
"""
from typing import Optional

import torch
from torch import nn

from .resnet import batch_norm2d

__all__ = ["MobileNetV2", "InvertedResidual", "INVERTED_RESIDUAL_SETTING", "LAST_STRIDE_BLOCK", "conv_bn_relu",
           "make_divisible"]

# t (expansion), c (output channels), n (blocks), s (stride of the first block)
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LAST_STRIDE_BLOCK = 14  # VKD sets the depthwise stride of features[14] to last_stride
FIRST_CHANNELS, LAST_CHANNELS = 32, 1280


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None) -> int:
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), bumped up one step if rounding lost more than 10%."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu: bool = True) -> nn.Sequential:
    """torchvision's ConvBNReLU: Conv2d (padding (k-1)//2, no bias), BN, ReLU6 (or identity)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        batch_norm2d(out_ch), nn.ReLU6(inplace=True) if relu else nn.Identity())


class InvertedResidual(nn.Module):
    """Expand 1x1 (t != 1) -> depthwise 3x3 (``stride``) -> linear 1x1 projection, plus the input
    when ``use_res_connect`` (decided from the construction-time stride)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int,
                 depthwise_stride: Optional[int] = None):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers = [conv_bn_relu(in_ch, hidden, kernel=1)] if expand_ratio != 1 else []
        dw_stride = stride if depthwise_stride is None else depthwise_stride
        layers += [conv_bn_relu(hidden, hidden, stride=dw_stride, groups=hidden),
                   nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False), batch_norm2d(out_ch)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet-V2 ``features`` returning (N, feat_dim, h, w); total stride 16 at
    ``last_stride`` 1 (VKD's default), 32 at 2.

    Size knob: ``width_mult`` (1.0 = torchvision) scales every channel count but the last,
    rounded by ``make_divisible(., round_nearest)``; ``feat_dim`` =
    ``make_divisible(1280 * max(1, width_mult))`` (1280 below 1.0, as torchvision). Both change
    parameter shapes. ``last_block_relu`` keeps ``features.18.2`` a ReLU6; the default False is
    VKD's network.
    """

    def __init__(self, last_stride: int = 1, width_mult: float = 1.0, round_nearest: int = 8,
                 last_block_relu: bool = False):
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
        self.features = nn.Sequential(*features)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
