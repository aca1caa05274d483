"""ResNet-18/34/50/101 backbones for re-ID, torchvision v1.5 layout (torchvision resnet.py).

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0`` ...) so ImageNet checkpoints load by name. Re-ID changes: the
stride of ``layer4`` is configurable (``last_stride``, 1 for VKD/MVD), there is no pooling
and no ``fc`` (heads live in ``heads.py``), and an optional DANet channel-attention module
(``shallow_cam``, ``shallow_cam2``, ``shallow_cam3``) can precede layer2, layer3 and layer4
(the original MVD code's ShallowCAM option). VKD's options (aimagelab/VKD model/net.py
``Backbone.get_resnet_backbone_layers``): ``last_block_relu=False`` replaces the ReLU module
of the last block of layer4 by an identity, and ``zero_init_residual`` as torchvision.
"""
from typing import Optional, Tuple

import torch
from torch import nn

__all__ = ["BLOCKS_PER_DEPTH", "BN_EPS", "BN_MOMENTUM", "BasicBlock", "Bottleneck", "ChannelAttention",
           "ResNet", "batch_norm2d"]

BLOCKS_PER_DEPTH = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # torch convention; MindSpore's equivalent is 0.9


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (torchvision naming and layout)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


def batch_norm2d(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the project's eps/momentum (network contract)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with identity shortcut (ResNet-18/34), expansion 1.

    The block's one ``relu`` module acts after bn1 and after the residual sum; ``relu=False``
    makes it an identity (VKD's ``layer4[-1].relu = nn.Sequential()``), which removes both.
    Assigning ``block.relu = nn.Identity()`` after construction does the same.
    """

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample=None, relu: bool = True):
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = batch_norm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = batch_norm2d(planes)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride, torchvision v1.5) -> 1x1 block, expansion 4.

    The block's one ``relu`` module acts after bn1, after bn2 and after the residual sum;
    ``relu=False`` makes it an identity, which removes all three (VKD, see :class:`BasicBlock`).
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample=None, relu: bool = True):
        super().__init__()
        self.conv1 = conv1x1(in_ch, planes)
        self.bn1 = batch_norm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = batch_norm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = batch_norm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu(out)


class ChannelAttention(nn.Module):
    """DANet channel attention module (CAM), used as MVD's optional ShallowCAM.

    X (N,C,H,W) -> (N,C,HW); energy = X Xᵀ; energy_new = rowmax(energy) - energy;
    A = softmax(energy_new, -1); y = scale * (A X).reshape(N,C,H,W) + x, with the learnable
    scalar ``scale`` (shape (1,)) initialised to 0 so the module starts as the identity.
    """

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        energy = torch.bmm(flat, flat.transpose(1, 2))
        energy_new = energy.max(dim=-1, keepdim=True)[0] - energy
        attention = torch.softmax(energy_new, dim=-1)
        out = torch.bmm(attention, flat).reshape(n, c, h, w)
        return self.scale * out + x


class ResNet(nn.Module):
    """ResNet backbone returning the last feature map (N, feat_dim, h, w).

    Stem: conv1 7x7/2, bn1, relu, maxpool 3x3/2; layer1..4 with ``width``·(1, 2, 4, 8)
    planes and strides (1, 2, 2, ``last_stride``): the first block of layer4 carries
    ``last_stride`` on its strided convolution (conv1 of a BasicBlock, conv2 of a Bottleneck)
    AND on its projection shortcut, as VKD sets both. ``feat_dim = 8 * width * expansion``
    (2048 for ResNet-50 at width 64).

    Size knob: ``width`` (64 = torchvision) changes every parameter shape; below 64 it gives
    small test networks. ``last_block_relu=False``: VKD's identity in place of the ReLU of
    ``layer4[-1]`` (all of that block's ReLUs). ``zero_init_residual``: gamma of the last BN
    of every block (bn2 / bn3) starts at 0, as torchvision's option.
    """

    def __init__(self, depth: int = 50, last_stride: int = 1, width: int = 64, shallow_cam: bool = False,
                 last_block_relu: bool = True, zero_init_residual: bool = False):
        super().__init__()
        if depth not in BLOCKS_PER_DEPTH:
            raise ValueError(f"unsupported ResNet depth {depth!r}: expected one of {sorted(BLOCKS_PER_DEPTH)}")
        block = BasicBlock if depth < 50 else Bottleneck
        blocks = BLOCKS_PER_DEPTH[depth]
        self.depth = depth
        self.feat_dim = 8 * width * block.expansion
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = batch_norm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = width
        self.layer1 = self._make_layer(block, width, blocks[0], 1, 1)
        self.layer2 = self._make_layer(block, width * 2, blocks[1], 2, 2)
        self.layer3 = self._make_layer(block, width * 4, blocks[2], 2, 3)
        self.layer4 = self._make_layer(block, width * 8, blocks[3], last_stride, 4,
                                       last_relu=last_block_relu)
        # the original code's ShallowCAM: channel attention before layer2, layer3 and layer4
        self.shallow_cam = ChannelAttention() if shallow_cam else None
        self.shallow_cam2 = ChannelAttention() if shallow_cam else None
        self.shallow_cam3 = ChannelAttention() if shallow_cam else None
        self._init_weights()
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.bn2.weight if isinstance(module, BasicBlock) else module.bn3.weight)

    def _stage_tail(self, index: int, channels: int) -> Optional[Tuple[str, nn.Module]]:
        """(name, module) appended to layer ``index`` after its blocks, or None (a plain ResNet).
        Subclasses override it (VKD's BAM ResNet adds ``layerN.bam``)."""
        return None

    def _make_layer(self, block, planes: int, count: int, stride: int, index: int,
                    last_relu: bool = True) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_ch != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self._in_ch, planes * block.expansion, stride),
                                       batch_norm2d(planes * block.expansion))
        layers = [block(self._in_ch, planes, stride, downsample, relu=last_relu or count > 1)]
        self._in_ch = planes * block.expansion
        layers += [block(self._in_ch, planes, relu=last_relu or i < count - 1) for i in range(1, count)]
        stage = nn.Sequential(*layers)
        tail = self._stage_tail(index, self._in_ch)
        if tail is not None:
            stage.add_module(*tail)
        return stage

    def _init_weights(self) -> None:
        """Kaiming-normal (fan_out, relu) convolutions; BatchNorm weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        if self.shallow_cam is not None:
            x = self.shallow_cam(x)
        x = self.layer2(x)
        if self.shallow_cam is not None:
            x = self.shallow_cam2(x)
        x = self.layer3(x)
        if self.shallow_cam is not None:
            x = self.shallow_cam3(x)
        return self.layer4(x)
