"""Framework-free facts about the KD-REID networks (OSNet students, ResNet-50 teachers).

Follows fremigereau/MTDA_KD_REID ``torchreid/models/{osnet,resnet,__init__}.py`` for the
networks' heads and forward outputs, and KaiyangZhou/deep-person-reid
``torchreid/models/osnet.py`` for OSNet's trunk and ImageNet file names (the two trunks are
identical). Both backends (``backends/<fw>/backbones/{osnet,reid_resnet}.py``) read these
constants, and both use :func:`match_state_by_name` to load ImageNet / reference
checkpoints the way torchreid's ``load_pretrained_weights`` does.

Head and outputs (MTDA, ``loss='kd_reid'``, ``'mmd'`` and ``'triplet'`` modes)::

    pooled   = global_avg_pool(trunk(x))                 # OSNet: channels[3]; ResNet-50: 2048
    emb      = feat_bn(feat(pooled))   if fc_dim > 0     # Linear + BatchNorm1d, NO ReLU
             = pooled                  otherwise
    logits   = classifier(emb)                            # Linear(emb_dim, num_classes), with bias
    test feature = emb / max(||emb||_2, 1e-12)            # MTDA's eval-mode forward

``emb`` (the "pre_class_features" of MTDA's engines) is what the D-MMD losses, the
triplet loss and the relational (log-Euclidean) KD loss read; ``logits`` feed the
cross-entropy. torchreid's own OSNet head (``fc.0`` Linear + ``fc.1`` BatchNorm1d + ReLU,
512-d) is commented out in MTDA's copy and replaced by ``feat``/``feat_bn``; so ImageNet
files' ``fc.*`` and 1000-class ``classifier.*`` keys never load (MTDA's loader discards
them too).
"""
from typing import Dict, Mapping, NamedTuple, Sequence, Tuple

from common.weights import DROPPED_TORCH

# MTDA build_model(..., fc_dim=2048) and every script's ``--features`` default (2048).
DEFAULT_FC_DIM = 2048

# KaiyangZhou torchreid/models/osnet.py: channels of conv1 and of the conv2..conv4 stages.
OSNET_CHANNELS: Dict[str, Tuple[int, int, int, int]] = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
}
OSNET_BLOCKS_PER_STAGE = (2, 2, 2)   # OSBlocks in conv2, conv3, conv4
OSNET_BOTTLENECK_REDUCTION = 4       # OSBlock mid channels = out // 4
OSNET_GATE_REDUCTION = 16            # ChannelGate hidden channels = mid // 16
OSNET_STREAM_DEPTHS = (1, 2, 3, 4)   # lite 3x3 layers of streams conv2a, conv2b, conv2c, conv2d

RESNET_NAME = "resnet50"
RESNET_DEPTH = 50
RESNET_LAST_STRIDE = 2               # MTDA resnet50(): last_stride=2 (no re-ID stride-1 trick)
RESNET_POOLED_DIM = 2048

REID_MODEL_NAMES = tuple(OSNET_CHANNELS) + (RESNET_NAME,)

# name -> default fc_dim as MTDA's factory passes it (build_model's fc_dim, i.e. --features).
DEFAULT_FC_DIMS: Dict[str, int] = {name: DEFAULT_FC_DIM for name in REID_MODEL_NAMES}

# name -> dimension of the globally pooled trunk feature (before ``feat``).
POOLED_DIMS: Dict[str, int] = dict({n: c[3] for n, c in OSNET_CHANNELS.items()},
                                   **{RESNET_NAME: RESNET_POOLED_DIM})

# ImageNet weight files: torchreid's ``<name>_imagenet.pth`` (KaiyangZhou, Google Drive) and
# torchvision's ResNet-50 file named in MTDA resnet.py model_urls.
IMAGENET_FILES: Dict[str, str] = dict({n: f"{n}_imagenet.pth" for n in OSNET_CHANNELS},
                                      **{RESNET_NAME: "resnet50-19c8e357.pth"})

# Keys of those ImageNet files that never fit a KD-REID model (torchreid's 512-d OSNet fc,
# the 1000-class classifiers); they are reported as skipped when loading.
IMAGENET_HEAD_PREFIXES: Dict[str, Tuple[str, ...]] = dict(
    {n: ("fc.", "classifier.") for n in OSNET_CHANNELS}, **{RESNET_NAME: ("fc.",)})

# Parameters of MTDA checkpoints that our networks do not build (feature-map KD only, used
# when kd_style is 'all' / 'only_feats'): ResNet teachers' margin buffers, students'
# 1x1 feature matchers, multi-head copies of feat/feat_bn.
UNBUILT_REFERENCE_PREFIXES = ("margin1", "margin2", "margin3", "margin4",
                              "feat_matcher_list.", "feat_fc_multi.")


def embedding_dim(name: str, fc_dim: int = DEFAULT_FC_DIM) -> int:
    """Dimension of the embedding (``pre_class_features``) of model ``name``: ``fc_dim``
    when positive, else the pooled trunk dimension (MTDA: ``if fc_dim > 0``)."""
    if name not in POOLED_DIMS:
        raise ValueError(f"unknown KD-REID model {name!r}: expected one of {', '.join(REID_MODEL_NAMES)}")
    return int(fc_dim) if fc_dim and fc_dim > 0 else POOLED_DIMS[name]


class LoadReport(NamedTuple):
    """Outcome of :func:`match_state_by_name`.

    loaded: checkpoint keys copied into the model; skipped: ``(key, reason)`` for checkpoint
    keys not copied (absent from the model, or shape differs); untouched: model keys the
    checkpoint did not provide (they keep their initialisation)."""
    loaded: Tuple[str, ...]
    skipped: Tuple[Tuple[str, str], ...]
    untouched: Tuple[str, ...]

    def summary(self) -> str:
        """One line: counts and the first skipped keys with their reasons."""
        shown = "; ".join(f"{k} ({why})" for k, why in self.skipped[:4])
        more = f" ... +{len(self.skipped) - 4}" if len(self.skipped) > 4 else ""
        return (f"loaded {len(self.loaded)} keys, skipped {len(self.skipped)}"
                + (f": {shown}{more}" if self.skipped else "")
                + f"; {len(self.untouched)} model keys keep their initialisation")


def strip_module_prefix(name: str) -> str:
    """``module.x`` -> ``x`` (checkpoints saved from nn.DataParallel), as torchreid does."""
    return name[len("module."):] if name.startswith("module.") else name


def match_state_by_name(model_shapes: Mapping[str, Sequence[int]],
                        state_shapes: Mapping[str, Sequence[int]]) -> LoadReport:
    """Which checkpoint keys load into a model, torchreid ``load_pretrained_weights`` style:
    a key loads when (after dropping a leading ``module.``) the model has it with the same
    shape; every other key is skipped with its reason. ``num_batches_tracked`` entries are
    ignored on both sides. Names are canonical (torch) names."""
    loaded, skipped = [], []
    wanted = {k: tuple(s) for k, s in model_shapes.items() if k.rpartition(".")[2] not in DROPPED_TORCH}
    for raw in state_shapes:
        key = strip_module_prefix(raw)
        if key.rpartition(".")[2] in DROPPED_TORCH:
            continue
        shape = tuple(state_shapes[raw])
        if key not in wanted:
            skipped.append((raw, "not in model"))
        elif wanted[key] != shape:
            skipped.append((raw, f"shape {shape} != model {wanted[key]}"))
        else:
            loaded.append(key)
    untouched = sorted(set(wanted) - set(loaded))
    return LoadReport(tuple(loaded), tuple(skipped), tuple(untouched))


def reid_model_table(build_osnet, build_resnet) -> dict:
    """``name -> constructor(num_classes, **kwargs)`` of KD-REID's complete re-ID models for a
    backend's builders: ``build_osnet(name, num_classes, **kwargs)`` for every OSNet size and
    ``build_resnet(num_classes, **kwargs)`` for MTDA's ResNet-50. Both backends build their
    ``REID_MODELS`` with it."""
    def osnet(name):
        def make(num_classes, **kwargs):
            return build_osnet(name, num_classes, **kwargs)
        return make
    return dict({name: osnet(name) for name in OSNET_CHANNELS}, **{RESNET_NAME: build_resnet})


def build_reid_from_table(table: dict, name: str, num_classes: int, **kwargs):
    """``table[name](num_classes, **kwargs)``; ValueError naming the known models otherwise."""
    if name not in table:
        raise ValueError(f"unknown re-ID model {name!r}: expected one of {', '.join(sorted(table))}")
    return table[name](num_classes, **kwargs)
