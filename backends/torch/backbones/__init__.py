"""Backbone networks of the PyTorch backend, by name (a plain table, as torchreid's).

Every backbone returns the last feature map ``(N, feat_dim, h, w)`` (no pooling, no
classifier: heads live in ``backends/torch/heads.py``), exposes ``feat_dim``, and uses
torchvision's / the reference's parameter names so ImageNet checkpoints load by name. The
names are VKD's ``--backbone`` values (aimagelab/VKD model/net.py), plus the alias
``mobilenet_v2``; their framework-free facts (feat_dim, ImageNet file, VKD's reset prefix)
are in ``common/backbones.py``. The MindSpore twin (``backends/mindspore/backbones``) has the
same names and signatures.

``REID_MODELS`` is a second table: KD-REID's complete re-ID models (OSNet x1_0..x0_25 and
MTDA's ResNet-50, trunk + ``feat``/``feat_bn`` embedding + classifier) that return
``(logits, embedding)`` and offer ``extract``; ``load_pretrained_by_name`` loads ImageNet or
reference checkpoints into them torchreid-style (same name and shape, others reported).
"""
from common.backbones import backbone_table, build_from_table
from common.kdreid_models import build_reid_from_table, reid_model_table

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

# name -> constructor(**kwargs) (the table is made by common.backbones.backbone_table); the
# constructors' keyword options are listed per name in common.backbones.BACKBONE_FACTS[name].options
BACKBONES = backbone_table(ResNet, BAMResNet, DenseNet, MobileNetV2)

# Complete re-ID models (trunk + embedding head + classifier) of KD-REID, by MTDA's names, kept
# apart from BACKBONES (bare feature maps for the heads of heads.py): these return
# (logits, embedding). name -> constructor(num_classes, fc_dim=2048, <size knob>): OSNet's knob
# is ``channels`` (4 ints), ResNet-50's is ``width``.
REID_MODELS = reid_model_table(build_osnet, build_reid_resnet)


def build_backbone(name: str, **kwargs):
    """The backbone called ``name`` (a key of :data:`BACKBONES`) built with ``kwargs``;
    ConfigError for an unknown name."""
    return build_from_table(BACKBONES, name, **kwargs)


def build_reid_model(name: str, num_classes: int, **kwargs):
    """The KD-REID model called ``name`` (a key of :data:`REID_MODELS`) with ``kwargs``."""
    return build_reid_from_table(REID_MODELS, name, num_classes, **kwargs)
