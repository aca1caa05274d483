"""DenseNet-121 trunk as VKD uses it, in MindSpore (twin of backends/torch/backbones/densenet.py).

torchvision's ``densenet121().features`` (torchvision densenet.py), which is what VKD keeps
(aimagelab/VKD model/net.py ``get_denset_backbone_layers``): conv0 7x7/2, norm0, relu0, pool0
3x3/2, denseblock1..4 with transition1..3 between them, norm5; no final ReLU. Parameter names
are torchvision's under ``features.`` after the BatchNorm leaf mapping of ``common.weights``.
Init as torchvision: convs kaiming-normal (fan_in), BN weight 1 and bias 0.
"""
from collections import OrderedDict

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from .resnet import batch_norm2d

__all__ = ["DenseNet", "DenseBlock", "DenseLayer", "DENSENET121_BLOCKS", "transition"]

DENSENET121_BLOCKS = (6, 12, 24, 16)


def _conv(in_ch, out_ch, kernel, stride=1):
    """Bias-free conv, torch-style padding (k-1)/2, torchvision DenseNet's kaiming-normal (fan_in)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, pad_mode="pad", padding=(kernel - 1) // 2,
                     has_bias=False, weight_init=HeNormal(mode="fan_in", nonlinearity="leaky_relu"))


class DenseLayer(nn.Cell):
    """norm1-relu1-conv1 (1x1) then norm2-relu2-conv2 (3x3); returns the new channels only."""

    def __init__(self, in_ch, growth_rate, bn_size):
        super().__init__()
        self.norm1 = batch_norm2d(in_ch)
        self.relu1 = nn.ReLU()
        self.conv1 = _conv(in_ch, bn_size * growth_rate, 1)
        self.norm2 = batch_norm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = _conv(bn_size * growth_rate, growth_rate, 3)

    def construct(self, x):
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.SequentialCell):
    """Dense layers ``denselayer1..n``, each fed the concatenation of everything before it;
    returns the block input concatenated with every layer's output."""

    def construct(self, x):
        for layer in self.cell_list:
            x = ops.cat((x, layer(x)), 1)
        return x


def transition(in_ch, out_ch):
    """norm-relu-conv (1x1)-pool (avg 2x2/2), torchvision's ``_Transition`` names."""
    return nn.SequentialCell(OrderedDict([
        ("norm", batch_norm2d(in_ch)), ("relu", nn.ReLU()), ("conv", _conv(in_ch, out_ch, 1)),
        ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
    ]))


class DenseNet(nn.Cell):
    """DenseNet-BC trunk returning norm5's feature map (N, feat_dim, h, w), stride 32.

    Defaults are DenseNet-121 (growth 32, bn_size 4, blocks (6, 12, 24, 16), 64 initial
    features; ``feat_dim`` 1024). Size knobs, all changing parameter shapes: ``growth_rate``,
    ``num_init_features``, ``bn_size``; ``block_config`` changes the number of layers."""

    def __init__(self, growth_rate=32, block_config=DENSENET121_BLOCKS, num_init_features=64, bn_size=4):
        super().__init__()
        stages = [("conv0", _conv(3, num_init_features, 7, stride=2)),
                  ("norm0", batch_norm2d(num_init_features)),
                  ("relu0", nn.ReLU()),
                  ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1))]
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
        self.features = nn.SequentialCell(OrderedDict(stages))
        self.feat_dim = channels

    def construct(self, x):
        return self.features(x)
