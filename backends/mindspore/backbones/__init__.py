"""Backbone networks of the MindSpore backend, by name (a plain table, as torchreid's).

Every backbone returns the last feature map ``(N, feat_dim, h, w)`` (no pooling, no
classifier: heads live in ``backends/mindspore/heads.py``), exposes ``feat_dim``, and uses
torchvision's / the reference's parameter names so ImageNet checkpoints load by name. The
names are VKD's ``--backbone`` values (aimagelab/VKD model/net.py), plus the alias
``mobilenet_v2``; their framework-free facts (feat_dim, ImageNet file, VKD's reset prefix)
are in ``common/backbones.py``. The torch twin (``backends/torch/backbones``) has the
same names and signatures.

``REID_MODELS`` is a second table: KD-REID's complete re-ID models (OSNet x1_0..x0_25 and
MTDA's ResNet-50, trunk + ``feat``/``feat_bn`` embedding + classifier) that return
``(logits, embedding)`` and offer ``extract``; ``load_pretrained_by_name`` loads ImageNet or
reference checkpoints into them torchreid-style (same name and shape, others reported).
"""
from common.backbones import BACKBONE_ALIASES, canonical_backbone_name
from common.kdreid_models import OSNET_CHANNELS, RESNET_NAME

from .bam import BAMResNet
from .densenet import DenseNet
from .mobilenet import MobileNetV2
from .osnet import OSNet, build_osnet
from .pretrained import load_pretrained_by_name
from .reid_resnet import ReIDResNet, build_reid_resnet
from .resnet import BLOCKS_PER_DEPTH, ChannelAttention, ResNet

__all__ = ["BACKBONES", "build_backbone", "ResNet", "BAMResNet", "DenseNet", "MobileNetV2",
           "ChannelAttention", "BLOCKS_PER_DEPTH", "REID_MODELS", "build_reid_model", "OSNet", "ReIDResNet",
           "load_pretrained_by_name"]


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


def _osnet(name):
    def make(num_classes, **kwargs):
        return build_osnet(name, num_classes, **kwargs)
    return make


# Complete re-ID models (trunk + embedding head + classifier) of KD-REID, by MTDA's names.
# Kept apart from BACKBONES, whose entries return bare feature maps for the heads of
# heads.py: these carry their own head and return (logits, embedding).
# name -> constructor(num_classes, fc_dim=2048, <size knob>): OSNet's knob is ``channels``
# (4 ints), ResNet-50's is ``width``.
REID_MODELS = dict({name: _osnet(name) for name in OSNET_CHANNELS}, **{RESNET_NAME: build_reid_resnet})


def build_reid_model(name: str, num_classes: int, **kwargs):
    """The KD-REID model called ``name`` (a key of :data:`REID_MODELS`) with ``kwargs``."""
    if name not in REID_MODELS:
        raise ValueError(f"unknown re-ID model {name!r}: expected one of {', '.join(sorted(REID_MODELS))}")
    return REID_MODELS[name](num_classes, **kwargs)
