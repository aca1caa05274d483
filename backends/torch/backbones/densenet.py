"""DenseNet-121 trunk as VKD uses it: torchvision's ``features`` only (torchvision densenet.py).

VKD (aimagelab/VKD model/net.py ``get_denset_backbone_layers``) keeps the children of
torchvision's ``densenet121().features``: conv0 7x7/2, norm0, relu0, pool0 3x3/2, then
denseblock1..4 with transition1..3 between them, then norm5. torchvision's ``forward``
applies a ReLU after ``features``; VKD's trunk does not, so the output is norm5's (it can be
negative). Parameter names are torchvision's, under ``features.`` (``features.conv0.weight``,
``features.denseblock1.denselayer1.norm1.weight``, ``features.transition1.conv.weight``,
``features.norm5.running_var`` ...). Memory-efficient checkpointing and dropout (rate 0 in
DenseNet-121) are left out.

A dense layer maps the concatenation of everything before it through BN-ReLU-conv1x1
(``bn_size * growth_rate`` channels) and BN-ReLU-conv3x3 (``growth_rate`` channels); a block
returns the concatenation of its input and all its layers' outputs. A transition is
BN-ReLU-conv1x1 (channels halved)-avgpool 2x2/2. Init as torchvision: convs kaiming-normal
(fan_in), BN weight 1 and bias 0.
"""
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .resnet import batch_norm2d

__all__ = ["DenseNet", "DenseBlock", "DenseLayer", "DENSENET121_BLOCKS", "transition"]

DENSENET121_BLOCKS = (6, 12, 24, 16)


class DenseLayer(nn.Module):
    """One dense layer: norm1-relu1-conv1 (1x1) then norm2-relu2-conv2 (3x3); returns the
    ``growth_rate`` new channels only."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = batch_norm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = batch_norm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.Sequential):
    """Dense layers ``denselayer1..n``; each sees the concatenation of the block input and all
    earlier outputs, and the block returns that concatenation grown by the last output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], 1)
        return x


def transition(in_ch: int, out_ch: int) -> nn.Sequential:
    """norm-relu-conv (1x1)-pool (avg 2x2/2), torchvision's ``_Transition`` names."""
    return nn.Sequential(OrderedDict([
        ("norm", batch_norm2d(in_ch)), ("relu", nn.ReLU(inplace=True)),
        ("conv", nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)),
        ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
    ]))


class DenseNet(nn.Module):
    """DenseNet-BC trunk returning norm5's feature map (N, feat_dim, h, w), stride 32.

    Defaults are DenseNet-121 (growth 32, bn_size 4, blocks (6, 12, 24, 16), 64 initial
    features; ``feat_dim`` 1024). Size knobs for small test networks, all changing parameter
    shapes: ``growth_rate``, ``num_init_features``, ``bn_size``; ``block_config`` changes the
    number of layers (and so the parameter names). ``feat_dim`` follows torchvision's rule:
    each block adds ``n * growth_rate`` channels, each transition halves them.
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = DENSENET121_BLOCKS,
                 num_init_features: int = 64, bn_size: int = 4):
        super().__init__()
        stages = [("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                  ("norm0", batch_norm2d(num_init_features)),
                  ("relu0", nn.ReLU(inplace=True)),
                  ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
        channels = num_init_features
        for i, count in enumerate(block_config, start=1):
            layers = [(f"denselayer{j + 1}", DenseLayer(channels + j * growth_rate, growth_rate, bn_size))
                      for j in range(count)]
            stages.append((f"denseblock{i}", DenseBlock(OrderedDict(layers))))
            channels += count * growth_rate
            if i < len(block_config):
                stages.append((f"transition{i}", transition(channels, channels // 2)))
                channels //= 2
        stages.append(("norm5", batch_norm2d(channels)))
        self.features = nn.Sequential(OrderedDict(stages))
        self.feat_dim = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
