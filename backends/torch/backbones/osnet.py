"""OSNet (Zhou et al., ICCV 2019) with MTDA-KD-REID's head, PyTorch backend.

Trunk and parameter names follow KaiyangZhou/deep-person-reid ``torchreid/models/osnet.py``
(``conv1.conv``, ``conv1.bn``, ``conv2.0.conv2b.1.conv1``, ``conv2.2.0.conv``,
``conv5.bn`` ...), so torchreid's ``osnet_x*_imagenet.pth`` files load by name. Only the plain
``osnet_x*`` variants are built: every instance-norm flag is off in them (torchreid's IN
layers exist only in ``osnet_ibn_x1_0``, which MTDA's model factory does not register).

Head and outputs follow fremigereau/MTDA_KD_REID ``torchreid/models/osnet.py``, which
differs from torchreid: torchreid's ``fc`` (Linear + BatchNorm1d + ReLU, 512-d) is replaced
by ``feat`` (Linear(channels[3], fc_dim)) + ``feat_bn`` (BatchNorm1d(fc_dim)) without ReLU,
present when ``fc_dim > 0`` (MTDA passes ``fc_dim=2048``); and its eval-mode forward returns
the L2-normalised embedding, where torchreid's returns the raw one. Here ``forward`` always
returns ``(logits, embedding)`` (MTDA's train-mode ``(y, v)``; its ``kd_reid`` mode adds an
empty feature-map list first) and :meth:`OSNet.extract` gives the eval-mode test feature;
the BatchNorm mode is the caller's ``train()`` / ``eval()``. The MindSpore twin
(``backends/mindspore/backbones/osnet.py``) has the same names and signatures.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from common.kdreid_models import (DEFAULT_FC_DIM, OSNET_BLOCKS_PER_STAGE, OSNET_BOTTLENECK_REDUCTION,
                                  OSNET_CHANNELS, OSNET_GATE_REDUCTION, OSNET_STREAM_DEPTHS)

__all__ = ["OSNet", "OSBlock", "ChannelGate", "LightConv3x3", "ConvBN", "build_osnet"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # torch convention (torchreid/MTDA use nn.BatchNorm defaults)


class ConvBN(nn.Module):
    """``conv`` (bias-free, optional stride/padding/groups) -> ``bn`` -> optional ReLU.

    Covers torchreid's ConvLayer / Conv1x1 (``relu=True``) and Conv1x1Linear
    (``relu=False``); parameter names ``conv.weight``, ``bn.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
                 padding: int = 0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.use_relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_relu else x


class LightConv3x3(nn.Module):
    """Lite 3x3: pointwise ``conv1`` (linear), depthwise 3x3 ``conv2``, ``bn``, ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Unified aggregation gate: x * sigmoid(fc2(relu(fc1(avgpool(x))))) with 1x1 convs
    ``fc1`` (C -> C // 16) and ``fc2`` (C // 16 -> C), both with bias."""

    def __init__(self, channels: int, reduction: int = OSNET_GATE_REDUCTION):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"ChannelGate needs at least {reduction} channels, got {channels}")
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(w))))


class OSBlock(nn.Module):
    """Omni-scale residual block: 1x1 ``conv1`` to out // 4 channels; four streams of 1, 2,
    3, 4 lite 3x3 layers (``conv2a``, ``conv2b``, ``conv2c``, ``conv2d``) each passed through
    the same ``gate`` and summed; linear 1x1 ``conv3`` back to ``out``; identity shortcut, or
    linear 1x1 ``downsample`` when in != out; ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid = out_ch // OSNET_BOTTLENECK_REDUCTION
        self.conv1 = ConvBN(in_ch, mid)
        streams = [nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(depth)])
                   for depth in OSNET_STREAM_DEPTHS[1:]]
        self.conv2a = LightConv3x3(mid, mid)  # depth-1 stream: a bare layer (torchreid names)
        self.conv2b, self.conv2c, self.conv2d = streams
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBN(mid, out_ch, relu=False)
        self.downsample = ConvBN(in_ch, out_ch, relu=False) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = (self.gate(self.conv2a(x1)) + self.gate(self.conv2b(x1))
              + self.gate(self.conv2c(x1)) + self.gate(self.conv2d(x1)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(x2) + identity)


def _stage(in_ch: int, out_ch: int, blocks: int, reduce: bool) -> nn.Sequential:
    """OSBlocks, then (``reduce``) a ReLU 1x1 conv and 2x2 average pool at index ``blocks``."""
    layers = [OSBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(blocks)]
    if reduce:
        layers.append(nn.Sequential(ConvBN(out_ch, out_ch), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """OSNet trunk + MTDA head (module docstring).

    Trunk: ``conv1`` 7x7/2 (channels[0]) + 3x3/2 max pool; ``conv2`` and ``conv3`` (OSBlocks
    + transition, halving the size) to channels[1], channels[2]; ``conv4`` to channels[3];
    ``conv5`` 1x1; global average pool -> ``pooled_dim`` = channels[3]. Head: ``feat`` +
    ``feat_bn`` when ``fc_dim > 0`` (``feat_dim`` = fc_dim, else channels[3]), then
    ``classifier`` Linear(feat_dim, num_classes). Init as the reference: convolutions
    kaiming-normal (fan_out, relu), biases 0, BatchNorm 1/0, Linear weights normal(0, 0.01).

    ``channels`` is the size knob (tests use small ones; each of channels[1:] must be at least
    64 so that the gate keeps one hidden channel); ``blocks`` the OSBlocks per stage.
    """

    def __init__(self, num_classes: int, channels: Sequence[int] = OSNET_CHANNELS["osnet_x1_0"],
                 fc_dim: int = DEFAULT_FC_DIM, blocks: Sequence[int] = OSNET_BLOCKS_PER_STAGE):
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
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c[0], c[1], blocks[0], reduce=True)
        self.conv3 = _stage(c[1], c[2], blocks[1], reduce=True)
        self.conv4 = _stage(c[2], c[3], blocks[2], reduce=False)
        self.conv5 = ConvBN(c[3], c[3])
        if self.fc_dim:
            self.feat = nn.Linear(self.pooled_dim, self.fc_dim)
            self.feat_bn = nn.BatchNorm1d(self.fc_dim, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.classifier = nn.Linear(self.feat_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def featuremaps(self, x: torch.Tensor) -> torch.Tensor:
        """conv5 output (N, channels[3], H/16, W/16) (torchreid ``featuremaps``)."""
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, num_classes), embedding (N, feat_dim)); the embedding is MTDA's ``v``
        (post-``feat_bn``, pre-classifier, not normalised) read by D-MMD, triplet and the
        relational KD loss."""
        v = self.featuremaps(x).mean(dim=(2, 3))
        if self.fc_dim:
            v = self.feat_bn(self.feat(v))
        return self.classifier(v), v

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Test feature: the L2-normalised embedding (MTDA's eval-mode output; call
        ``eval()`` first for the reference's behaviour)."""
        return F.normalize(self(x)[1], p=2, dim=1)


def build_osnet(name: str, num_classes: int, fc_dim: int = DEFAULT_FC_DIM, channels=None, **kwargs) -> OSNet:
    """OSNet ``name`` (a key of ``OSNET_CHANNELS``); ``channels`` overrides its width."""
    if name not in OSNET_CHANNELS:
        raise ValueError(f"unknown OSNet {name!r}: expected one of {', '.join(OSNET_CHANNELS)}")
    return OSNet(num_classes, channels=channels or OSNET_CHANNELS[name], fc_dim=fc_dim, **kwargs)
