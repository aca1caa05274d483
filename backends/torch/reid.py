"""A plain BNNeck re-ID model, PyTorch: backbone -> global average pooling -> BNNeck
(Luo et al. 2019). The building block of single-encoder methods and of tests; the MindSpore
twin is backends/mindspore/reid.py."""
from typing import Tuple

import torch
from torch import nn

from .backbones import build_backbone
from .heads import BNNeck

__all__ = ["ReIDNet"]


class ReIDNet(nn.Module):
    """forward(x) -> (pooled feature, BN feature, logits)."""

    def __init__(self, num_classes: int, arch: str = "resnet50", width: int = 64, last_stride: int = 1):
        super().__init__()
        self.backbone = build_backbone(arch, width=width, last_stride=last_stride)
        self.neck = BNNeck(self.backbone.feat_dim, num_classes)
        self.feat_dim = self.backbone.feat_dim

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feat = self.backbone(x).mean(dim=(2, 3))
        bn_feat, logits = self.neck(feat)
        return feat, bn_feat, logits
