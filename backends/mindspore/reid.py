"""A plain BNNeck re-ID model, MindSpore: backbone -> global average pooling -> BNNeck
(Luo et al. 2019). Mirrors backends/torch/reid.py."""
from mindspore import nn, ops

from .backbones import build_backbone
from .heads import BNNeck

__all__ = ["ReIDNet"]


class ReIDNet(nn.Cell):
    """construct(x) -> (pooled feature, BN feature, logits)."""

    def __init__(self, num_classes: int, arch: str = "resnet50", width: int = 64, last_stride: int = 1):
        super().__init__()
        self.backbone = build_backbone(arch, width=width, last_stride=last_stride)
        self.neck = BNNeck(self.backbone.feat_dim, num_classes)
        self.feat_dim = self.backbone.feat_dim

    def construct(self, x):
        feat = ops.mean(self.backbone(x), (2, 3))
        bn_feat, logits = self.neck(feat)
        return feat, bn_feat, logits
