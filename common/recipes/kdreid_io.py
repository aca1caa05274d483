"""KD-REID networks and their weights (``common/recipes/kdreid.py``): building a network of
the run configuration, and loading a source / teacher / student checkpoint (MTDA's ``-mp``,
``-mps``, ``-mpt``) or ImageNet weights (``--pretrain``) into it.

MTDA (fremigereau/MTDA_KD_REID ``torchreid/__init__.py`` ``initialize_model_optimizer_scheduler``
and ``torchreid/utils/torchtools.py`` ``resume_from_checkpoint``) loads ``-mp`` files with
``load_state_dict(strict=False)``: a checkpoint of another architecture loads NOTHING and
trains from ImageNet without a word. Here every key of the network must come from the file
with its shape (the reference's feature-map KD buffers and multi-head copies, which these
networks do not build, may be extra), otherwise a one-line CheckpointError names the file,
the architecture it seems to hold and the first mismatch.
"""
from typing import Dict, Tuple

import numpy as np

from common.checkpoint_io import read_safetensors, sniff_format, wrong_backend_error
from common.errors import CheckpointError
from common.kdreid_models import (OSNET_CHANNELS, RESNET_NAME, UNBUILT_REFERENCE_PREFIXES, match_state_by_name,
                                  strip_module_prefix)


def build_net(cfg: dict, B, arch: str, num_classes: int):
    """The re-ID network ``arch`` (``backbones.REID_MODELS``) with the run's embedding size
    (``kdreid.features``) and size knobs (``model.width`` and ``model.last_stride`` for
    ResNet-50, ``kdreid.osnet_channels`` / ``osnet_blocks`` for OSNet)."""
    k, m = cfg["kdreid"], cfg["model"]
    return B.kdreid.build_net(arch, int(num_classes), fc_dim=k["features"], width=m["width"],
                              last_stride=m["last_stride"], channels=tuple(k["osnet_channels"]),
                              blocks=tuple(k["osnet_blocks"]))


def read_state(B, path: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """(canonical numpy state with any ``module.`` prefix dropped, extra) of a checkpoint this
    backend reads: its own checkpoints (``torch_*.pth`` / ``mindspore_*.ckpt``, the torch
    backend also MTDA's ``model-best.pth.tar`` and bare state dicts) or a ``.safetensors``
    file; the other framework's file gets the conversion command."""
    fmt = sniff_format(path)
    if fmt == "safetensors":
        state, extra, _ = read_safetensors(path)
    elif fmt == B.name:
        state, extra, _ = B.checkpoint.read_file(path)
    else:
        raise wrong_backend_error(path, fmt, B.name)
    return {strip_module_prefix(k): v for k, v in state.items()}, extra


def guess_arch(state: Dict[str, np.ndarray]) -> str:
    """The KD-REID architecture a state dict seems to hold ('' when unknown)."""
    if "layer4.0.conv1.weight" in state:
        return RESNET_NAME
    conv5 = state.get("conv5.conv.weight")
    if conv5 is not None:
        for name, channels in OSNET_CHANNELS.items():
            if channels[3] == conv5.shape[0]:
                return name
        return "an OSNet"
    return ""


def load_into(B, model, path: str, arch: str, role: str) -> dict:
    """Load checkpoint ``path`` into ``model`` (architecture ``arch``) by name; every model
    key must be provided with its shape (module docstring). ``role`` names the file in
    errors (e.g. 'teacher 2 (-mpt)'). Returns the file's extra dict."""
    state, extra = read_state(B, path)
    model_shapes = {k: v.shape for k, v in B.weights.state_to_numpy(model).items()}
    report = match_state_by_name(model_shapes, {k: np.shape(v) for k, v in state.items()})
    skipped = [(k, why) for k, why in report.skipped if not k.startswith(UNBUILT_REFERENCE_PREFIXES)]
    if skipped or report.untouched:
        held = guess_arch(state)
        what = f" (it holds {held if held.startswith('an ') else 'a ' + held} network)" if held and held != arch else ""
        first = (f"{skipped[0][0]}: {skipped[0][1]}" if skipped else f"{report.untouched[0]} missing")
        raise CheckpointError(f"{role} checkpoint '{path}' does not fit a {arch} with this run's settings{what}: "
                              f"{first}; expected a {arch} checkpoint (same --features, size and classes)")
    B.weights.load_numpy_state(model, {k: state[k] for k in report.loaded}, strict=False)
    return extra


def load_imagenet(B, model, path: str, arch: str) -> str:
    """``--pretrain`` ImageNet weights (torchvision's ResNet-50 file, torchreid's
    ``osnet_x*_imagenet.pth``) by name and shape, torchreid style (the 1000-class heads are
    skipped); one line describing what loaded. CheckpointError when nothing fits."""
    report = B.backbones.load_pretrained_by_name(model, path)
    if not report.loaded:
        raise CheckpointError(f"--pretrain '{path}' holds no weight of a {arch}: {report.summary()}")
    return f"ImageNet weights {path} -> {arch}: {report.summary()}"
