"""Backbone networks of the MindSpore backend, by name (a plain table, as torchreid's).

Every backbone returns the last feature map ``(N, feat_dim, h, w)`` (no pooling, no
classifier: heads live in ``backends/mindspore/heads.py``), exposes ``feat_dim``, and uses
torchvision's / torchreid's parameter names so ImageNet checkpoints load by name. The
torch twin (``backends/torch/backbones``) has the same names and signatures.
"""
from .resnet import BLOCKS_PER_DEPTH, ChannelAttention, ResNet

__all__ = ["BACKBONES", "build_backbone", "ResNet", "ChannelAttention", "BLOCKS_PER_DEPTH"]


def _resnet(depth):
    def make(**kwargs):
        return ResNet(depth=depth, **kwargs)
    return make


# name -> constructor(**kwargs)
BACKBONES = {f"resnet{d}": _resnet(d) for d in BLOCKS_PER_DEPTH}


def build_backbone(name: str, **kwargs):
    """The backbone called ``name`` (a key of :data:`BACKBONES`) built with ``kwargs``."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: expected one of {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](**kwargs)
