"""Weights as framework-neutral numpy dictionaries for the MindSpore backend (SPEC section 11).

Canonical names are torch's ``state_dict`` names. MindSpore parameter names differ only in
BatchNorm leaves (gamma/beta/moving_mean/moving_variance); the mapping comes from
``common.weights`` (by module type and name suffix, never by order). Conv2d weights are
OIHW and Dense weights (out, in) in both frameworks, so loading and saving are bit-exact.

Parameter names are taken from ``Cell.parameters_and_names()`` — the attribute paths
relative to the cell passed in — not from ``Parameter.name``, so a sub-cell (e.g. one
``backbone`` of an MVDNet) exposes the same canonical names as a stand-alone ResNet.
"""
import os
from typing import Dict, List, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

from common.backbones import backbone_facts, rename_legacy_densenet_keys
from common.errors import CheckpointError
from common.weights import (BACKBONE_ATTR, PRETRAINED_IGNORED_PREFIXES, PRETRAINED_OPTIONAL_PREFIXES,
                            DROPPED_TORCH, describe_mismatch, diff_keys, ms_to_torch_names)

from .backbones import BAMResNet, DenseNet, MobileNetV2, ResNet

BACKBONE_CLASSES = (ResNet, BAMResNet, DenseNet, MobileNetV2)

CONVERT_HINT = "convert it with python -m tools.convert_weights IN OUT.safetensors"


__all__ = ["state_to_numpy", "load_numpy_state", "read_weights_file", "find_backbones",
           "load_backbone_pretrained"]

def _is_dropped(name: str) -> bool:
    return name.rpartition(".")[2] in DROPPED_TORCH


def _model_params(model: nn.Cell) -> Dict[str, ms.Parameter]:
    """Canonical (torch) name -> live Parameter of ``model`` (BN statistics included)."""
    params = dict(model.parameters_and_names())
    mapping = ms_to_torch_names(params)
    canonical = {mapping[k]: p for k, p in params.items()}
    if len(canonical) != len(params):  # two MindSpore names mapped onto one torch name
        raise CheckpointError(f"{type(model).__name__}: parameter names are not unique after "
                              "mapping to torch names (SPEC 11)")
    return canonical


def _to_numpy(value) -> np.ndarray:
    """A float32 contiguous numpy copy of an ndarray, MindSpore tensor or torch tensor."""
    if isinstance(value, ms.Tensor):
        value = value.asnumpy()
    elif hasattr(value, "detach"):  # a torch tensor; torch is not imported here
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.array(value, dtype=np.float32, copy=True))


def state_to_numpy(model: nn.Cell) -> Dict[str, np.ndarray]:
    """Every parameter and BatchNorm moving statistic of ``model`` as a float32 numpy copy
    under its canonical (torch) name (SPEC section 11)."""
    return {name: _to_numpy(param) for name, param in _model_params(model).items()}


def load_numpy_state(model: nn.Cell, state: dict, strict: bool = True) -> Tuple[List[str], List[str]]:
    """Copy ``state`` (canonical name -> array) into ``model`` bit-exactly (SPEC section 11).

    Keys ending in ``num_batches_tracked`` are ignored. Returns (missing, unexpected) sorted
    key lists. Raises CheckpointError on any shape mismatch, and when ``strict`` on any
    missing or unexpected key; the message names the first offending keys and shapes.
    Nothing is written when an error is raised."""
    targets = _model_params(model)
    given = {k: v for k, v in state.items() if not _is_dropped(k)}
    missing, unexpected = diff_keys(targets, given)
    arrays, shapes = {}, []
    for name in sorted(set(targets) & set(given)):
        array = _to_numpy(given[name])
        if tuple(array.shape) != tuple(targets[name].shape):
            shapes.append((name, tuple(targets[name].shape), tuple(array.shape)))
        arrays[name] = array
    if shapes or (strict and (missing or unexpected)):
        raise CheckpointError("cannot load weights into " + type(model).__name__ + ": "
                              + describe_mismatch(missing if strict else [],
                                                  unexpected if strict else [], shapes))
    for name, array in arrays.items():
        param = targets[name]
        param.copy_(ms.Tensor(array, dtype=param.dtype))  # in place: a compiled step keeps seeing it
    return missing, unexpected


def _read_torch_checkpoint(path: str) -> Dict[str, np.ndarray]:
    """A torchvision ``.pth`` state dict as numpy arrays; torch is imported only here."""
    try:
        import torch
    except ImportError as exc:
        raise CheckpointError(f"reading {path} needs torch, which is not installed: "
                              f"{CONVERT_HINT}") from exc
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read torch checkpoint {path}: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(raw).__name__})")
    return {k: v.detach().cpu().numpy() for k, v in raw.items() if isinstance(v, torch.Tensor)}


def read_weights_file(path: str) -> Dict[str, np.ndarray]:
    """Read a torchvision ``.pth`` state dict or a ``.safetensors`` file into numpy arrays."""
    if not os.path.isfile(path):
        raise CheckpointError(f"pretrained weights not found: {path} (expected a .pth or .safetensors file)")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        try:
            return dict(load_file(path))
        except Exception as exc:  # corrupt header, wrong format
            raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from exc
    if path.endswith((".pth", ".pt")):
        return _read_torch_checkpoint(path)
    raise CheckpointError(f"unsupported pretrained weights file {path}: expected .pth or .safetensors")


def find_backbones(model: nn.Cell) -> List[Tuple[str, nn.Cell]]:
    """(qualified name, module) for every backbone of ``model``: the modules named ``backbone``
    or ``*.backbone`` (any backbone class of ``backbones/``); the model itself when it is a bare
    backbone (name '')."""
    if isinstance(model, BACKBONE_CLASSES):
        return [("", model)]
    return [(name, module) for name, module in model.cells_and_names()
            if name.rpartition(".")[2] == BACKBONE_ATTR and isinstance(module, BACKBONE_CLASSES)]


def load_backbone_pretrained(model: nn.Cell, path, arch: str = "") -> List[nn.Cell]:
    """ImageNet initialisation of every backbone of ``model`` from a torchvision checkpoint
    (``.pth``) or a ``.safetensors`` file with canonical names.

    ``arch`` (a name of ``common.backbones``) says which keys the file holds that the backbone
    does not (its classifier: ``fc.*`` / ``classifier.*``) and which backbone parameters keep
    their own initialisation (BAM modules; the ShallowCAM additions always do); DenseNet's
    legacy key names are renamed. Without ``arch``: a torchvision ResNet file. Any other
    missing or unexpected backbone key, or a shape mismatch, raises CheckpointError naming
    them. Returns the list of backbone modules that were loaded."""
    ignored, optional = PRETRAINED_IGNORED_PREFIXES, PRETRAINED_OPTIONAL_PREFIXES
    if arch:
        facts = backbone_facts(arch)
        ignored, optional = facts.ignored_pretrained_prefixes, optional + facts.own_init_prefixes
    checkpoint = rename_legacy_densenet_keys(read_weights_file(str(path)))
    weights = {k: v for k, v in checkpoint.items() if not k.startswith(ignored) and not _is_dropped(k)}
    backbones = find_backbones(model)
    if not backbones:
        raise CheckpointError(f"{type(model).__name__} has no 'backbone' to load {path} into")
    loaded = []
    for name, backbone in backbones:
        expected = [k for k in _model_params(backbone) if not k.startswith(optional)]
        missing, unexpected = diff_keys(expected, weights)
        if missing or unexpected:
            raise CheckpointError(f"pretrained weights {path} do not fit backbone '{name or type(backbone).__name__}': "
                                  + describe_mismatch(missing, unexpected))
        load_numpy_state(backbone, weights, strict=False)
        loaded.append(backbone)
    return loaded
