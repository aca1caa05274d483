"""Weights as framework-neutral numpy dictionaries (SPEC section 11).

Canonical names are torch's ``state_dict`` names without ``num_batches_tracked``. Values are
float32 numpy arrays; Conv2d weights are OIHW and Linear weights (out, in), exactly as the
MindSpore backend stores them, so loading and saving are bit-exact copies.
"""
import os
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from common.backbones import backbone_facts, rename_legacy_densenet_keys
from common.errors import CheckpointError
from common.weights import (BACKBONE_ATTR, PRETRAINED_IGNORED_PREFIXES, PRETRAINED_OPTIONAL_PREFIXES,
                            DROPPED_TORCH, describe_mismatch, diff_keys)

from .backbones import BAMResNet, DenseNet, MobileNetV2, ResNet

BACKBONE_CLASSES = (ResNet, BAMResNet, DenseNet, MobileNetV2)



__all__ = ["state_to_numpy", "load_numpy_state", "read_weights_file", "find_backbones",
           "load_backbone_pretrained"]

def _is_dropped(name: str) -> bool:
    return name.rpartition(".")[2] in DROPPED_TORCH


def _model_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Canonical name -> live parameter/buffer tensor (``num_batches_tracked`` excluded)."""
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    return {k: v for k, v in tensors.items() if not _is_dropped(k)}


def state_to_numpy(model: nn.Module) -> Dict[str, np.ndarray]:
    """Every parameter and BatchNorm running statistic as a float32 numpy copy under its
    canonical (torch) name, ``num_batches_tracked`` dropped (SPEC section 11)."""
    return {name: tensor.detach().cpu().numpy().astype(np.float32, copy=True)
            for name, tensor in model.state_dict().items() if not _is_dropped(name)}


def load_numpy_state(model: nn.Module, state: dict, strict: bool = True) -> Tuple[List[str], List[str]]:
    """Copy ``state`` (canonical name -> array) into ``model`` bit-exactly (SPEC section 11).

    Keys ending in ``num_batches_tracked`` are ignored. Returns (missing, unexpected) sorted
    key lists. Raises CheckpointError on any shape mismatch, and when ``strict`` on any
    missing or unexpected key; the message names the first offending keys and shapes.
    Nothing is written when an error is raised.
    """
    targets = _model_tensors(model)
    given = {k: v for k, v in state.items() if not _is_dropped(k)}
    missing, unexpected = diff_keys(targets, given)
    arrays, shapes = {}, []
    for name in sorted(set(targets) & set(given)):
        value = given[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        if tuple(array.shape) != tuple(targets[name].shape):
            shapes.append((name, tuple(targets[name].shape), tuple(array.shape)))
        arrays[name] = array
    if shapes or (strict and (missing or unexpected)):
        raise CheckpointError("cannot load weights into " + type(model).__name__ + ": "
                              + describe_mismatch(missing if strict else [], unexpected if strict else [], shapes))
    with torch.no_grad():
        for name, array in arrays.items():
            target = targets[name]
            target.copy_(torch.from_numpy(array).to(device=target.device, dtype=target.dtype))
    return missing, unexpected


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
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read torch checkpoint {path}: {exc}") from exc
        if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
            raw = raw["state_dict"]
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path} does not hold a state dict (got {type(raw).__name__})")
        return {k: v.detach().cpu().numpy() for k, v in raw.items() if isinstance(v, torch.Tensor)}
    raise CheckpointError(f"unsupported pretrained weights file {path}: expected .pth or .safetensors")


def find_backbones(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(qualified name, module) for every backbone of ``model``: the modules named ``backbone``
    or ``*.backbone`` (any backbone class of ``backbones/``); the model itself when it is a bare
    backbone (name '')."""
    if isinstance(model, BACKBONE_CLASSES):
        return [("", model)]
    return [(name, module) for name, module in model.named_modules()
            if name.rpartition(".")[2] == BACKBONE_ATTR and isinstance(module, BACKBONE_CLASSES)]


def load_backbone_pretrained(model: nn.Module, path, arch: str = "") -> List[nn.Module]:
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
        expected = [k for k in _model_tensors(backbone) if not k.startswith(optional)]
        missing, unexpected = diff_keys(expected, weights)
        if missing or unexpected:
            raise CheckpointError(f"pretrained weights {path} do not fit backbone '{name or type(backbone).__name__}': "
                                  + describe_mismatch(missing, unexpected))
        load_numpy_state(backbone, weights, strict=False)
        loaded.append(backbone)
    return loaded
