"""VKD's ResNet-50/101 with Bottleneck Attention Modules (BAM, Park et al., BMVC 2018).

Follows aimagelab/VKD model/cbam/bam.py and model/cbam/resnet_bam.py: one BAM is appended to
layer1, layer2 and layer3 (after their residual blocks, as the module ``layerN.bam``), none
to layer4. A BAM on x (N, C, H, W) returns ``(1 + sigmoid(Mc(x) * Ms(x))) * x`` with

* channel gate Mc: global average pool -> Linear(C, C/16) -> BatchNorm1d -> ReLU ->
  Linear(C/16, C), broadcast over H, W (names ``channel_att.gate_c.gate_c_fc_0``,
  ``gate_c_bn_1``, ``gate_c_fc_final``);
* spatial gate Ms: 1x1 conv C -> C/16, BN, ReLU, then twice a 3x3 conv with dilation 4 and
  padding 4, BN, ReLU, then a 1x1 conv to one channel, broadcast over C (names
  ``spatial_att.gate_s.gate_s_conv_reduce0``, ``gate_s_bn_reduce0``, ``gate_s_conv_di_0/1``,
  ``gate_s_bn_di_0/1``, ``gate_s_conv_final``); every gate conv and Linear has a bias.

Parameter names equal the reference's state dict (``layer1.bam.channel_att.gate_c.gate_c_fc_0.weight``
...), so its checkpoints load by name; the trunk has torchvision's names and loads the plain
torchvision ResNet file (the BAMs keep their own initialisation, as in the reference).
Initialisation of the BAMs as the reference: gate convs kaiming-normal (fan_out), Linear
weights torch's default, every BN weight 1 and every bias 0. (The reference leaves the trunk's
projection convs at torch's default init; here the trunk is initialised as :class:`ResNet`,
which the ImageNet weights replace anyway.)
"""
from collections import OrderedDict
from typing import Optional, Tuple

import torch
from torch import nn

from .resnet import BN_EPS, BN_MOMENTUM, ResNet, batch_norm2d

__all__ = ["BAM", "BAMResNet", "ChannelGate", "SpatialGate", "BAM_REDUCTION", "BAM_DILATION"]

BAM_REDUCTION = 16  # channel reduction of both gates
BAM_DILATION = 4    # dilation (and padding) of the spatial gate's two 3x3 convolutions


class ChannelGate(nn.Module):
    """Mc(x): (N, C, H, W) -> (N, C, 1, 1) channel attention logits (reference bam.py)."""

    def __init__(self, channels: int, reduction: int = BAM_REDUCTION):
        super().__init__()
        hidden = channels // reduction
        self.gate_c = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("gate_c_fc_0", nn.Linear(channels, hidden)),
            ("gate_c_bn_1", nn.BatchNorm1d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM)),
            ("gate_c_relu_1", nn.ReLU()),
            ("gate_c_fc_final", nn.Linear(hidden, channels)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_c(x.mean(dim=(2, 3)))[:, :, None, None]


class SpatialGate(nn.Module):
    """Ms(x): (N, C, H, W) -> (N, 1, H, W) spatial attention logits (reference bam.py)."""

    def __init__(self, channels: int, reduction: int = BAM_REDUCTION, dilation: int = BAM_DILATION):
        super().__init__()
        hidden = channels // reduction
        layers = [("gate_s_conv_reduce0", nn.Conv2d(channels, hidden, kernel_size=1)),
                  ("gate_s_bn_reduce0", batch_norm2d(hidden)),
                  ("gate_s_relu_reduce0", nn.ReLU())]
        for i in range(2):
            layers += [(f"gate_s_conv_di_{i}", nn.Conv2d(hidden, hidden, kernel_size=3,
                                                          padding=dilation, dilation=dilation)),
                       (f"gate_s_bn_di_{i}", batch_norm2d(hidden)),
                       (f"gate_s_relu_di_{i}", nn.ReLU())]
        layers.append(("gate_s_conv_final", nn.Conv2d(hidden, 1, kernel_size=1)))
        self.gate_s = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x)


class BAM(nn.Module):
    """y = (1 + sigmoid(Mc(x) * Ms(x))) * x, the product broadcast to (N, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channel_att = ChannelGate(channels)
        self.spatial_att = SpatialGate(channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(module.weight)
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 + torch.sigmoid(self.channel_att(x) * self.spatial_att(x))) * x


class BAMResNet(ResNet):
    """:class:`ResNet` with a BAM after layer1, layer2 and layer3 (``layerN.bam``).

    Same options as :class:`ResNet` (``last_stride``, ``last_block_relu``,
    ``zero_init_residual``; no ShallowCAM). Size knob: ``width`` (64 = the reference) changes
    every parameter shape; the BAM of layer N has ``width * 2**(N-1) * expansion`` channels
    and a hidden width of that over 16, so ``width`` must be at least 4 for ResNet-50/101.
    """

    def __init__(self, depth: int = 50, last_stride: int = 1, width: int = 64,
                 last_block_relu: bool = True, zero_init_residual: bool = False):
        super().__init__(depth=depth, last_stride=last_stride, width=width,
                         last_block_relu=last_block_relu, zero_init_residual=zero_init_residual)
        for module in self.modules():  # ResNet's init re-drew the gate convs; restore BAM's
            if isinstance(module, BAM):
                module._init_weights()

    def _stage_tail(self, index: int, channels: int) -> Optional[Tuple[str, nn.Module]]:
        return ("bam", BAM(channels)) if index < 4 else None
