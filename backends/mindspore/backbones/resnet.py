"""ResNet-18/34/50/101 backbone for re-ID in MindSpore (twin of backends/torch/backbones/resnet.py).

Structure and attribute names follow torchvision's ResNet v1.5 (stride on the 3x3 conv of a
Bottleneck; ``downsample`` = SequentialCell(1x1 conv, BN) named ``downsample.0/1``) so that
``backends.mindspore.weights`` maps every parameter to its torch name by BN suffix only.
Re-ID changes: configurable ``last_stride`` and ``width``; no pooling and no fc (the heads
pool). Optional DANet channel attention (``shallow_cam``, ``shallow_cam2``, ``shallow_cam3``)
before layer2, layer3 and layer4, as in the original MVD code. VKD's options (aimagelab/VKD
model/net.py ``Backbone.get_resnet_backbone_layers``): ``last_block_relu=False`` replaces the
ReLU cell of the last block of layer4 by an identity, and ``zero_init_residual`` as
torchvision.

BatchNorm: eps 1e-5, MindSpore momentum 0.9 (== torch momentum 0.1).
"""
from collections import OrderedDict

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

__all__ = ["BLOCKS_PER_DEPTH", "BN_EPS", "BN_MOMENTUM", "BasicBlock", "Bottleneck", "ChannelAttention",
           "ResNet", "batch_norm2d"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # MindSpore convention: 1 - torch momentum (torch 0.1)

BLOCKS_PER_DEPTH = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                    50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


def conv2d(in_ch, out_ch, kernel, stride=1, padding=0):
    """Bias-free Conv2d with kaiming-normal (fan_out, relu) init, torch-style explicit padding."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, pad_mode="pad", padding=padding,
                     has_bias=False, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def batch_norm2d(channels):
    """BatchNorm2d with weight 1, bias 0, eps 1e-5, momentum matching torch 0.1."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM,
                          gamma_init="ones", beta_init="zeros")


def make_downsample(in_ch, out_ch, stride):
    """Projection shortcut: SequentialCell(1x1 conv stride ``stride``, BN) -> names ``0``, ``1``."""
    return nn.SequentialCell([conv2d(in_ch, out_ch, 1, stride=stride), batch_norm2d(out_ch)])


class BasicBlock(nn.Cell):
    """Two 3x3 convs with identity/projection shortcut (ResNet-18/34, expansion 1).

    The one ``relu`` cell acts after bn1 and after the residual sum; ``relu=False`` makes it an
    identity (VKD's ``layer4[-1].relu = nn.Sequential()``), removing both."""
    expansion = 1

    def __init__(self, in_ch, planes, stride=1, downsample=None, relu=True):
        super().__init__()
        self.conv1 = conv2d(in_ch, planes, 3, stride=stride, padding=1)
        self.bn1 = batch_norm2d(planes)
        self.conv2 = conv2d(planes, planes, 3, padding=1)
        self.bn2 = batch_norm2d(planes)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.downsample = downsample

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Cell):
    """1x1 -> 3x3 (stride here, v1.5) -> 1x1 convs with expansion 4 (ResNet-50/101).

    The one ``relu`` cell acts after bn1, bn2 and the residual sum; ``relu=False`` makes it an
    identity, removing all three (VKD)."""
    expansion = 4

    def __init__(self, in_ch, planes, stride=1, downsample=None, relu=True):
        super().__init__()
        self.conv1 = conv2d(in_ch, planes, 1)
        self.bn1 = batch_norm2d(planes)
        self.conv2 = conv2d(planes, planes, 3, stride=stride, padding=1)
        self.bn2 = batch_norm2d(planes)
        self.conv3 = conv2d(planes, planes * self.expansion, 1)
        self.bn3 = batch_norm2d(planes * self.expansion)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.downsample = downsample

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ChannelAttention(nn.Cell):
    """DANet channel attention module (Fu et al., CVPR 2019), the original MVD code's option.

    X (N,C,HW); energy = X Xᵀ; energy_new = rowmax(energy) - energy; A = softmax(energy_new);
    y = scale * (A X) + x, with the learnable scalar ``scale`` (shape (1,)) initialised to 0."""

    def __init__(self):
        super().__init__()
        self.scale = ms.Parameter(ms.Tensor(np.zeros((1,), np.float32)), name="scale")

    def construct(self, x):
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        energy = ops.bmm(flat, flat.transpose(0, 2, 1))
        energy_new = ops.amax(energy, axis=-1, keepdims=True) - energy
        attention = ops.softmax(energy_new, axis=-1)
        out = ops.bmm(attention, flat).reshape(n, c, h, w)
        return self.scale * out + x


class ResNet(nn.Cell):
    """Re-ID ResNet trunk: stem + layer1..layer4, returns the last feature map.

    Channels width, 2w, 4w, 8w (x expansion); strides 1, 2, 2, ``last_stride`` (on the strided
    conv of layer4's first block AND its projection shortcut, as VKD sets both).
    ``feat_dim`` = 8 * width * expansion. forward(x (N,3,H,W)) -> (N, feat_dim, h, w).
    Size knob: ``width`` (64 = torchvision) changes every parameter shape.
    ``last_block_relu=False``: identity in place of the ReLU of ``layer4[-1]`` (VKD).
    ``zero_init_residual``: gamma of every block's last BN (bn2 / bn3) starts at 0."""

    def __init__(self, depth=50, last_stride=1, width=64, shallow_cam=False, last_block_relu=True,
                 zero_init_residual=False):
        super().__init__()
        if depth not in BLOCKS_PER_DEPTH:
            raise ValueError(f"unsupported ResNet depth {depth!r}; expected one of "
                             f"{sorted(BLOCKS_PER_DEPTH)}")
        kind, counts = BLOCKS_PER_DEPTH[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self.conv1 = conv2d(3, width, 7, stride=2, padding=3)
        self.bn1 = batch_norm2d(width)
        self.relu = nn.ReLU()
        # Max pool 3x3 s2 p1 with implicit -inf padding, equal to torch's max_pool2d(3, 2, 1).
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        self.in_ch = width
        self.layer1 = self._make_layer(block, width, counts[0], 1, 1)
        self.layer2 = self._make_layer(block, width * 2, counts[1], 2, 2)
        self.layer3 = self._make_layer(block, width * 4, counts[2], 2, 3)
        self.layer4 = self._make_layer(block, width * 8, counts[3], last_stride, 4,
                                       last_relu=last_block_relu)
        self.use_shallow_cam = bool(shallow_cam)
        # the original code's ShallowCAM: channel attention before layer2, layer3 and layer4
        self.shallow_cam = ChannelAttention() if shallow_cam else None
        self.shallow_cam2 = ChannelAttention() if shallow_cam else None
        self.shallow_cam3 = ChannelAttention() if shallow_cam else None
        self.feat_dim = width * 8 * block.expansion
        if zero_init_residual:  # torchvision: the last BN of every residual block starts at 0
            for _, cell in self.cells_and_names():
                if isinstance(cell, (BasicBlock, Bottleneck)):
                    gamma = (cell.bn2 if isinstance(cell, BasicBlock) else cell.bn3).gamma
                    gamma.set_data(ms.Tensor(np.zeros(gamma.shape, np.float32)))

    def _stage_tail(self, index, channels):
        """(name, cell) appended to layer ``index`` after its blocks, or None (a plain ResNet).
        Subclasses override it (VKD's BAM ResNet adds ``layerN.bam``)."""
        return None

    def _make_layer(self, block, planes, count, stride, index, last_relu=True):
        """One stage of ``count`` blocks; the first one carries the stride and the shortcut.
        ``last_relu=False`` gives the last block an identity in place of its ReLU."""
        downsample = None
        if stride != 1 or self.in_ch != planes * block.expansion:
            downsample = make_downsample(self.in_ch, planes * block.expansion, stride)
        cells = [block(self.in_ch, planes, stride, downsample, relu=last_relu or count > 1)]
        self.in_ch = planes * block.expansion
        cells += [block(self.in_ch, planes, relu=last_relu or i < count - 1) for i in range(1, count)]
        named = [(str(i), cell) for i, cell in enumerate(cells)]
        tail = self._stage_tail(index, self.in_ch)
        if tail is not None:
            named.append(tail)
        return nn.SequentialCell(OrderedDict(named))

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        if self.use_shallow_cam:
            x = self.shallow_cam(x)
        x = self.layer2(x)
        if self.use_shallow_cam:
            x = self.shallow_cam2(x)
        x = self.layer3(x)
        if self.use_shallow_cam:
            x = self.shallow_cam3(x)
        return self.layer4(x)
