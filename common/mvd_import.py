"""Checkpoints of the original MVD code (``checkpoint.pth.tar`` / ``model_best.pth.tar``)
mapped onto this project's ``mvd_original`` network, framework-free.

The original saves ``{'model': ft_net.state_dict(), 'epoch': ..., 'best_top1': ...}``
(mm01.py, reid/utils/serialization.py) with the module names of reid/models/newresnet.py
and reid/models/baseline.py. The mapping is by name prefix and suffix, never by position:

=====================================================  ==========================================
original                                               this project
=====================================================  ==========================================
``RGB_`` / ``IR_`` / ``shared_``                       ``visible.`` / ``infrared.`` / ``shared.``
``<X>_backbone.base.<torchvision ResNet key>``          ``<enc>.backbone.<key>``
``<X>_backbone.base.fc.*`` (unused ImageNet head)      dropped
``<X>_backbone.cam_256/cam_512/cam_1024._cam_module.gamma``  ``<enc>.backbone.shallow_cam/2/3.scale``
``<X>_backbone.bottleneck.*``                          ``<enc>.neck.bottleneck.*``
``<X>_backbone.classifier.0.*``                        ``<enc>.neck.classifier.*``
``<X>_Bottleneck.bottleneck.model.<i>.*``              ``<enc>.ib.net.<i>.*``
``<X>_Bottleneck.classifier.<i>.*``                    ``<enc>.ib_classifier.net.<i>.*``
=====================================================  ==========================================

A ``module.`` prefix (``nn.DataParallel``) is stripped first.
"""
from typing import Dict, List, Tuple

from common.errors import CheckpointError

IMPORTED_FROM = "mvd-original"
CONFIG_FILE = "mvd_original.yaml"
_ENCODERS = {"RGB": "visible", "IR": "infrared", "shared": "shared"}
_CAMS = {"cam_256": "shallow_cam", "cam_512": "shallow_cam2", "cam_1024": "shallow_cam3"}


def is_original_state(keys) -> bool:
    """True when the keys look like the original MVD ``ft_net`` state dict."""
    keys = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    return any(k.startswith("RGB_backbone.") for k in keys) and any(k.startswith("RGB_Bottleneck.") for k in keys)


def _map_key(key: str):
    """The canonical name of one original key; None to drop it; KeyError when unknown."""
    head, _, rest = key.partition("_")
    if head not in _ENCODERS:
        raise KeyError(key)
    enc = _ENCODERS[head]
    part, _, tail = rest.partition(".")
    if part == "backbone":
        if tail.startswith("base.fc."):
            return None
        if tail.startswith("base."):
            return f"{enc}.backbone.{tail[len('base.'):]}"
        cam, _, leaf = tail.partition(".")
        if cam in _CAMS and leaf == "_cam_module.gamma":
            return f"{enc}.backbone.{_CAMS[cam]}.scale"
        if tail.startswith("bottleneck."):
            return f"{enc}.neck.{tail}"
        if tail.startswith("classifier.0."):
            return f"{enc}.neck.classifier.{tail[len('classifier.0.'):]}"
    elif part == "Bottleneck":
        if tail.startswith("bottleneck.model."):
            return f"{enc}.ib.net.{tail[len('bottleneck.model.'):]}"
        if tail.startswith("classifier."):
            return f"{enc}.ib_classifier.net.{tail[len('classifier.'):]}"
    raise KeyError(key)


def original_to_canonical(state: Dict) -> Tuple[Dict, List[str]]:
    """(state under this project's names, the dropped keys). CheckpointError naming the
    first key the mapping does not know."""
    out, dropped = {}, []
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        try:
            new = _map_key(k)
        except KeyError:
            raise CheckpointError(f"unknown key {key!r} in an original MVD checkpoint; expected the names of "
                                  "reid/models/newresnet.py (RGB_backbone.base..., RGB_Bottleneck...)") from None
        if new is None:
            dropped.append(key)
        else:
            out[new] = value
    return out, dropped


def num_classes_of(state: Dict) -> int:
    """Identities of a mapped original state (rows of the visible BNNeck classifier)."""
    weight = state.get("visible.neck.classifier.weight")
    if weight is None:
        raise CheckpointError("the original MVD checkpoint has no RGB_backbone.classifier.0.weight")
    return int(weight.shape[0])
