"""Checkpoints for the PyTorch backend (SPEC sections 9 and 11; engine contract).

File format (``torch.save``)::

    {'format': 'reid-kd', 'backend': 'torch', 'model': model.state_dict(),
     'optimizer': optimizer.state_dict() or None, 'extra': {...JSON-serialisable...}}

Writes are atomic: a temporary file in the destination folder, then ``os.replace``.
Loading is strict (every key, every shape, via ``weights.load_numpy_state``) and recognises
the file by its content: a MindSpore checkpoint gets a CheckpointError with the conversion
command; a ``.safetensors`` file (canonical names) loads model weights only. A bare
``state_dict`` saved with ``torch.save(model.state_dict())`` is accepted as model weights, and
so is a checkpoint of the original MVD code (``{'model': ft_net state dict, ...}``), mapped by
``common.mvd_import`` onto the ``mvd_original`` network.
"""
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from common import mvd_import
from common.errors import CheckpointError
from common.weights import DROPPED_TORCH, bn_prefixes
from common.checkpoint_io import (FORMAT_TAG, atomic_output, first_line, jsonable, read_safetensors, write_failure,
                                   sniff_format, write_safetensors, wrong_backend_error)

from . import weights

__all__ = ["BACKEND", "save_checkpoint", "save_safetensors", "read_file", "write_file", "load_checkpoint",
           "read_extra"]

BACKEND = "torch"


def _is_dropped(name: str) -> bool:
    return name.rpartition(".")[2] in DROPPED_TORCH


def _atomic_save(path, payload: dict) -> None:
    with atomic_output(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as exc:  # torch words a full disk as "enforce fail ... unexpected pos"
            raise write_failure(path, exc, _payload_bytes(payload)) from None


def _payload_bytes(payload: dict) -> int:
    """Bytes of the tensors in a checkpoint payload (model and optimizer state)."""
    def size(obj):
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(size(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(size(v) for v in obj)
        return 0
    return size(payload)


def _payload(model_state: dict, optimizer_state, extra) -> dict:
    return {"format": FORMAT_TAG, "backend": BACKEND, "model": model_state,
            "optimizer": optimizer_state, "extra": jsonable(extra)}


def save_checkpoint(path, model, optimizer=None, extra: Optional[dict] = None) -> None:
    """Atomically save model weights, optimizer state and ``extra`` (epoch, best metric,
    config, sampler/RNG state; JSON-serialisable) to ``path`` (usually ``.pth``)."""
    model_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict() if optimizer is not None else None
    _atomic_save(path, _payload(model_state, optimizer_state, extra))


def save_safetensors(path, model, extra: Optional[dict] = None) -> None:
    """Atomically save the model weights (canonical names) as framework-neutral safetensors."""
    write_safetensors(path, weights.state_to_numpy(model), BACKEND, extra)


def _load_payload(path) -> dict:
    """The raw object of a torch checkpoint; bare state dicts are wrapped as our format."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle corruption, foreign objects
        raise CheckpointError(f"cannot read torch checkpoint '{path}': {first_line(exc)}") from None
    if isinstance(raw, dict) and raw.get("format") == FORMAT_TAG:
        if raw.get("backend") != BACKEND:
            raise wrong_backend_error(path, raw.get("backend"), BACKEND)
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    epoch = raw.get("epoch") if isinstance(raw, dict) else None
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):  # the original MVD code's .pth.tar
        raw = raw["model"]
    if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        if mvd_import.is_original_state(raw):
            state, _ = mvd_import.original_to_canonical(raw)
            extra = {"imported_from": mvd_import.IMPORTED_FROM, "num_classes": mvd_import.num_classes_of(state)}
            if isinstance(epoch, int):
                extra["epoch"] = epoch - 1  # the original stores the number of finished epochs
            return _payload(state, None, extra)
        return _payload(raw, None, {})
    raise CheckpointError(f"'{path}' is not a reid-kd checkpoint nor a torch state dict")


def _to_numpy_state(model_state: dict) -> Dict[str, np.ndarray]:
    """Canonical numpy copies; ``num_batches_tracked`` dropped (SPEC 11)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model_state.items() if not _is_dropped(k)}


def read_file(path) -> Tuple[Dict[str, np.ndarray], dict, Optional[dict]]:
    """(canonical numpy state, extra, optimizer state dict or None) of a torch checkpoint
    (used by tools.convert_weights)."""
    found = sniff_format(path)
    if found != BACKEND:
        raise CheckpointError(f"'{path}' is a {found} file, not a torch checkpoint")
    payload = _load_payload(path)
    return _to_numpy_state(payload["model"]), payload.get("extra") or {}, payload.get("optimizer")


def write_file(path, state: Dict[str, np.ndarray], extra: Optional[dict] = None,
               optimizer_state: Optional[dict] = None) -> None:
    """Atomically write canonical numpy ``state`` (+ a torch optimizer ``state_dict``) as a
    torch checkpoint. ``num_batches_tracked`` (0) is added for every BatchNorm so the model
    entry is a complete ``state_dict`` (used by tools.convert_weights)."""
    model_state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items() if not _is_dropped(k)}
    for prefix in sorted(bn_prefixes(model_state, "running_mean")):
        model_state[f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"] = torch.tensor(0)
    _atomic_save(path, _payload(model_state, optimizer_state, extra))


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Strictly load ``path`` into ``model`` (and ``optimizer`` when given and present in the
    file); returns the ``extra`` dict. A ``.safetensors`` file loads weights only. Errors
    (missing/corrupt file, the other backend's file, missing/unexpected keys, shape
    mismatch) raise CheckpointError naming the path or the key."""
    found = sniff_format(path)
    if found == "mindspore":
        raise wrong_backend_error(path, found, BACKEND)
    if found == "safetensors":
        state, extra, _ = read_safetensors(path)
        weights.load_numpy_state(model, state, strict=True)
        _warn_no_optimizer(path, optimizer)
        return extra
    payload = _load_payload(path)
    model_state = payload["model"]
    weights.load_numpy_state(model, _to_numpy_state(model_state), strict=True)
    _restore_batch_counters(model, model_state)
    if optimizer is not None:
        if payload.get("optimizer") is None:
            _warn_no_optimizer(path, optimizer)
        else:
            try:
                optimizer.load_state_dict(payload["optimizer"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"optimizer state in '{path}' does not fit this optimizer: "
                                      f"{first_line(exc)}") from None
    return payload.get("extra") or {}


def _restore_batch_counters(model, model_state: dict) -> None:
    """Copy ``num_batches_tracked`` where both sides have it (not part of the canonical state)."""
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in model_state.items():
            if _is_dropped(name) and name in buffers:
                buffers[name].copy_(value)


def _warn_no_optimizer(path, optimizer) -> None:
    if optimizer is not None:
        warnings.warn(f"'{path}' holds no optimizer state: the optimizer starts afresh", stacklevel=3)


def read_extra(path) -> dict:
    """The ``extra`` dict (epoch, config, num_classes, ...) of a torch or safetensors
    checkpoint, without a model; a MindSpore file gets the conversion hint."""
    found = sniff_format(path)
    if found == "safetensors":
        return read_safetensors(path)[1]
    if found != BACKEND:
        raise wrong_backend_error(path, found, BACKEND)
    return _load_payload(path).get("extra") or {}
