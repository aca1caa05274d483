"""Framework-free facts about the backbones both backends build (names, sizes, ImageNet files).

The names are VKD's ``--backbone`` values (aimagelab/VKD model/net.py ``Backbone``). For each
backbone this module records what the VKD training code needs to know without building a
network:

* ``feat_dim``: channels of the last feature map at full size;
* ``reinit_prefix``: the parameters VKD resets to their ImageNet values before training a
  student (``TriNet.reinit_layers(reinitl4=True)`` in model/net.py): ``layer4.`` for the
  ResNets (BAM included), ``features.denseblock4.`` for DenseNet-121 (its final ``norm5`` is
  NOT reset), nothing for MobileNet-V2 (VKD's code passes). VKD also resets the classifier in
  that call; classifiers live outside the backbones;
* ``imagenet_file`` / ``imagenet_url``: the torchvision ImageNet checkpoint VKD starts from
  (the files of torchvision 0.5, which VKD used; ``imagenet_file_v1`` is the name the same
  ``IMAGENET1K_V1`` weights carry in torchvision >= 0.13);
* ``ignored_pretrained_prefixes``: keys of that file the backbone does not have (classifier);
* ``own_init_prefixes``: backbone parameters the file does not hold, which keep their own
  initialisation (the BAM modules, as in VKD model/cbam/resnet_bam.py ``resnet50_bam``);
* ``options``: the keyword options the backbone constructor accepts besides its size knob;
* ``vkd_kwargs``: the options that reproduce VKD's network (VKD builds every torchvision
  ResNet with ``zero_init_residual=True``, sets ``last_stride`` 1 and replaces the ReLU of the
  last residual block by an identity; MobileNet-V2 gets ``last_stride`` 1 and loses its final
  ReLU6).
"""
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from common.errors import ConfigError

__all__ = ["BackboneFacts", "BACKBONE_FACTS", "BACKBONE_NAMES", "BACKBONE_ALIASES",
           "canonical_backbone_name", "backbone_facts", "rename_legacy_densenet_keys",
           "vkd_checkpoint_key"]

TORCHVISION_URL = "https://download.pytorch.org/models/"
RESNET_OPTIONS = ("last_stride", "last_block_relu", "zero_init_residual")
VKD_RESNET_KWARGS = {"last_stride": 1, "last_block_relu": False, "zero_init_residual": True}
BAM_PREFIXES = ("layer1.bam.", "layer2.bam.", "layer3.bam.")


@dataclass(frozen=True)
class BackboneFacts:
    """Facts about one full-size backbone (see the module docstring for each field)."""
    name: str
    family: str                      # "resnet", "resnet_bam", "densenet", "mobilenet"
    feat_dim: int
    reinit_prefix: Optional[str]
    imagenet_file: str
    imagenet_file_v1: str
    ignored_pretrained_prefixes: Tuple[str, ...]
    own_init_prefixes: Tuple[str, ...] = ()
    options: Tuple[str, ...] = ()
    vkd_kwargs: Dict[str, object] = field(default_factory=dict)

    @property
    def imagenet_url(self) -> str:
        return TORCHVISION_URL + self.imagenet_file


def _resnet(name, feat_dim, file, file_v1, bam=False):
    return BackboneFacts(name=name, family="resnet_bam" if bam else "resnet", feat_dim=feat_dim,
                         reinit_prefix="layer4.", imagenet_file=file, imagenet_file_v1=file_v1,
                         ignored_pretrained_prefixes=("fc.",),
                         own_init_prefixes=BAM_PREFIXES if bam else (),
                         options=RESNET_OPTIONS, vkd_kwargs=dict(VKD_RESNET_KWARGS))


BACKBONE_FACTS: Dict[str, BackboneFacts] = {f.name: f for f in (
    _resnet("resnet18", 512, "resnet18-5c106cde.pth", "resnet18-f37072fd.pth"),
    _resnet("resnet34", 512, "resnet34-333f7ec4.pth", "resnet34-b627a593.pth"),
    _resnet("resnet50", 2048, "resnet50-19c8e357.pth", "resnet50-0676ba61.pth"),
    _resnet("resnet101", 2048, "resnet101-5d3b4d8f.pth", "resnet101-63fe2227.pth"),
    # VKD's resnet_bam loads the plain torchvision ResNet file; the BAMs keep their own init
    _resnet("resnet50bam", 2048, "resnet50-19c8e357.pth", "resnet50-0676ba61.pth", bam=True),
    _resnet("resnet101bam", 2048, "resnet101-5d3b4d8f.pth", "resnet101-63fe2227.pth", bam=True),
    # the file keeps legacy dense-layer names (norm.1, conv.2 ...): see rename_legacy_densenet_keys
    BackboneFacts(name="densenet121", family="densenet", feat_dim=1024,
                  reinit_prefix="features.denseblock4.", imagenet_file="densenet121-a639ec97.pth",
                  imagenet_file_v1="densenet121-a639ec97.pth",
                  ignored_pretrained_prefixes=("classifier.",)),
    BackboneFacts(name="mobilenet", family="mobilenet", feat_dim=1280, reinit_prefix=None,
                  imagenet_file="mobilenet_v2-b0353104.pth", imagenet_file_v1="mobilenet_v2-b0353104.pth",
                  ignored_pretrained_prefixes=("classifier.",), options=("last_stride", "last_block_relu"),
                  vkd_kwargs={"last_stride": 1, "last_block_relu": False}),
)}
BACKBONE_NAMES: Tuple[str, ...] = tuple(BACKBONE_FACTS)
BACKBONE_ALIASES: Dict[str, str] = {"mobilenet_v2": "mobilenet"}


def canonical_backbone_name(name: str) -> str:
    """``name`` with aliases resolved (``mobilenet_v2`` -> ``mobilenet``); ConfigError if unknown."""
    name = BACKBONE_ALIASES.get(name, name)
    if name not in BACKBONE_FACTS:
        known = ", ".join(BACKBONE_NAMES + tuple(BACKBONE_ALIASES))
        raise ConfigError(f"unknown backbone {name!r}: expected one of {known}")
    return name


def backbone_facts(name: str) -> BackboneFacts:
    """The :class:`BackboneFacts` of backbone ``name`` (aliases accepted)."""
    return BACKBONE_FACTS[canonical_backbone_name(name)]


# torchvision's DenseNet checkpoints predate the ban on dots in module names: a dense layer's
# ``norm1`` is stored as ``norm.1`` (torchvision densenet.py ``_load_state_dict`` renames them).
_LEGACY_DENSE_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.\w+)$")


def rename_legacy_densenet_keys(state: dict) -> dict:
    """A copy of ``state`` with ``...denselayerN.norm.1.weight`` keys renamed ``...norm1.weight``."""
    out = {}
    for key, value in state.items():
        match = _LEGACY_DENSE_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


_DENSENET_CHILDREN = ("conv0", "norm0", "relu0", "pool0", "denseblock1", "transition1",
                      "denseblock2", "transition2", "denseblock3", "transition3",
                      "denseblock4", "norm5")
_RESNET_STEM = ("conv1", "bn1")


def vkd_checkpoint_key(name: str, key: str) -> Optional[str]:
    """Our canonical name of a key of VKD's ``Backbone`` (``backbone.`` prefix stripped).

    VKD stores the trunk as ``features_layers``, a ModuleList (model/net.py): for the ResNets
    ``[Sequential(conv1, bn1, relu, maxpool), Sequential(layer1), ..., Sequential(layer4)]``,
    for DenseNet the children of ``features``, for MobileNet the children of ``features``.
    Returns None for a key outside ``features_layers``.
    """
    family = backbone_facts(name).family
    match = re.match(r"^features_layers\.(\d+)\.(.+)$", key)
    if not match:
        return None
    index, rest = int(match.group(1)), match.group(2)
    if family in ("resnet", "resnet_bam"):
        sub, _, leaf = rest.partition(".")
        if index == 0:
            return f"{_RESNET_STEM[int(sub)]}.{leaf}"
        return f"layer{index}.{leaf}"  # Sequential(layerN) adds one level: ``.0.``
    if family == "densenet":
        return f"features.{_DENSENET_CHILDREN[index]}.{rest}"
    return f"features.{index}.{rest}"


# ------------------------------------------------------------------ name tables of the backends

def backbone_table(resnet, bam_resnet, densenet, mobilenet) -> dict:
    """``name -> constructor(**kwargs)`` for a backend's backbone classes: ``resnet{depth}``
    (``resnet(depth=..., **kwargs)`` for each depth of :data:`BACKBONE_FACTS`), the BAM
    ResNets, DenseNet-121, MobileNet-V2 and the aliases. Both backends build their
    ``BACKBONES`` with it, so the two tables cannot drift apart."""
    def with_depth(cls, depth):
        def make(**kwargs):
            return cls(depth=depth, **kwargs)
        make.__doc__ = f"{cls.__name__}(depth={depth}, **kwargs)"
        return make

    table = {}
    for name, facts in BACKBONE_FACTS.items():
        if facts.family == "densenet":
            table[name] = densenet
        elif facts.family == "mobilenet":
            table[name] = mobilenet
        else:
            depth = int(name[len("resnet"):].replace("bam", ""))
            table[name] = with_depth(bam_resnet if facts.family == "resnet_bam" else resnet, depth)
    table.update({alias: table[name] for alias, name in BACKBONE_ALIASES.items()})
    return table


def build_from_table(table: dict, name: str, **kwargs):
    """``table[name](**kwargs)`` after resolving aliases (ConfigError for an unknown name)."""
    return table[canonical_backbone_name(name)](**kwargs)
