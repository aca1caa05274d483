"""Backbone networks of the MindSpore backend, by name (a plain table, as torchreid's).

Every backbone returns the last feature map ``(N, feat_dim, h, w)`` (no pooling, no
classifier: heads live in ``backends/mindspore/heads.py``), exposes ``feat_dim``, and uses
torchvision's / the reference's parameter names so ImageNet checkpoints load by name. The
names are VKD's ``--backbone`` values (aimagelab/VKD model/net.py), plus the alias
``mobilenet_v2``; their framework-free facts (feat_dim, ImageNet file, VKD's reset prefix)
are in ``common/backbones.py``. The torch twin (``backends/torch/backbones``) has the
same names and signatures.
"""
from common.backbones import BACKBONE_ALIASES, canonical_backbone_name

from .bam import BAMResNet
from .densenet import DenseNet
from .mobilenet import MobileNetV2
from .resnet import BLOCKS_PER_DEPTH, ChannelAttention, ResNet

__all__ = ["BACKBONES", "build_backbone", "ResNet", "BAMResNet", "DenseNet", "MobileNetV2",
           "ChannelAttention", "BLOCKS_PER_DEPTH"]


def _with_depth(cls, depth):
    def make(**kwargs):
        return cls(depth=depth, **kwargs)
    make.__doc__ = f"{cls.__name__}(depth={depth}, **kwargs)"
    return make


# name -> constructor(**kwargs); the constructors' keyword options are listed per name in
# common.backbones.BACKBONE_FACTS[name].options (plus each one's size knob).
BACKBONES = {f"resnet{d}": _with_depth(ResNet, d) for d in BLOCKS_PER_DEPTH}
BACKBONES.update({f"resnet{d}bam": _with_depth(BAMResNet, d) for d in (50, 101)})
BACKBONES["densenet121"] = DenseNet
BACKBONES["mobilenet"] = MobileNetV2
BACKBONES.update({alias: BACKBONES[name] for alias, name in BACKBONE_ALIASES.items()})


def build_backbone(name: str, **kwargs):
    """The backbone called ``name`` (a key of :data:`BACKBONES`) built with ``kwargs``;
    ConfigError for an unknown name."""
    return BACKBONES[canonical_backbone_name(name)](**kwargs)
