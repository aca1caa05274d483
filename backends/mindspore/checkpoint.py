"""Checkpoints for the MindSpore backend (SPEC sections 9 and 11; engine contract).

File format: ``mindspore.save_checkpoint`` (suffix ``.ckpt``, which MindSpore requires) of

* the model parameters and BatchNorm statistics under their MindSpore names,
* the optimizer state under ``reid_opt.<key>`` (``lrs``, ``step``, ``exp_avg.<param>``, ...;
  see backends/mindspore/optim.py),
* ``append_dict`` strings: ``reid_kd_format`` = 'reid-kd', ``reid_kd_backend`` = 'mindspore',
  ``reid_kd_extra`` = JSON of ``extra``.

Writes are atomic (``<path>.tmp-<pid>.ckpt`` in the same folder, then ``os.replace``); a
failed write also removes MindSpore's own ``<path>.tmp-<pid>.tmp``, and the file gets the
permissions the umask gives any new file (MindSpore itself leaves 0400).
Loading is strict (via ``weights.load_numpy_state``) and recognises the file by content: a
torch checkpoint gets a CheckpointError with the conversion command; ``.safetensors``
(canonical names) loads model weights only.
"""
import contextlib
import json
import os
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import mindspore as ms

from common import mvd_import
from common.errors import CheckpointError
from common.weights import ms_to_torch_names, torch_to_ms_names
from common.checkpoint_io import (FORMAT_TAG, atomic_output, default_file_mode, first_line, jsonable, read_safetensors,
                                   sniff_format, write_safetensors, wrong_backend_error)

from . import weights

__all__ = ["BACKEND", "save_checkpoint", "save_safetensors", "read_file", "write_file", "load_checkpoint",
           "read_extra"]

BACKEND = "mindspore"
OPT_PREFIX = "reid_opt."
META_FORMAT, META_BACKEND, META_EXTRA = "reid_kd_format", "reid_kd_backend", "reid_kd_extra"
SUFFIX = ".ckpt"


def _check_suffix(path) -> str:
    path = str(path)
    if not path.endswith(SUFFIX):
        raise CheckpointError(f"MindSpore checkpoints must end in {SUFFIX}, got '{path}'")
    return path


@contextlib.contextmanager
def _quiet_mindspore_log():
    """Silence MindSpore's Python logger for the block (a failed save logs a CRITICAL line
    before raising; the caller reports the error itself)."""
    try:
        from mindspore import log as ms_log
        logger = ms_log._get_logger()
    except (ImportError, AttributeError):  # pragma: no cover - another MindSpore layout
        yield
        return
    previous, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = previous


def write_file(path, state: Dict[str, np.ndarray], extra: Optional[dict] = None,
               optimizer_state: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Atomically write canonical numpy ``state`` (+ optimizer state, + extra) as a MindSpore
    checkpoint; names mapped with ``common.weights.torch_to_ms_names`` (SPEC 11)."""
    path = _check_suffix(path)
    names = torch_to_ms_names(state)
    entries = [{"name": names[k], "data": ms.Tensor(np.array(v, copy=True))} for k, v in state.items() if k in names]
    for key, value in (optimizer_state or {}).items():
        entries.append({"name": OPT_PREFIX + key, "data": ms.Tensor(np.array(value, copy=True))})
    meta = {META_FORMAT: FORMAT_TAG, META_BACKEND: BACKEND, META_EXTRA: json.dumps(jsonable(extra))}
    with atomic_output(path, suffix=SUFFIX) as tmp:
        own_tmp = os.path.splitext(tmp)[0] + ".tmp"  # MindSpore writes <name>.tmp, then renames
        try:
            with _quiet_mindspore_log():  # its own CRITICAL line would repeat our one-line error
                ms.save_checkpoint(entries, tmp, append_dict=meta)
        except BaseException:
            if os.path.exists(own_tmp):
                os.remove(own_tmp)
            raise
        os.chmod(tmp, default_file_mode())  # MindSpore leaves its files read-only (0400)


def _load_any_name(path: str) -> dict:
    """``mindspore.load_checkpoint`` insists on the .ckpt suffix; a MindSpore checkpoint under
    another name (recognised by its content) is read through a temporary .ckpt link."""
    if path.endswith(SUFFIX):
        return ms.load_checkpoint(path)
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        link = os.path.join(folder, "checkpoint" + SUFFIX)
        os.symlink(os.path.abspath(path), link)
        return ms.load_checkpoint(link)


def read_file(path) -> Tuple[Dict[str, np.ndarray], dict, Optional[Dict[str, np.ndarray]]]:
    """(canonical numpy model state, extra, optimizer state or None) of a MindSpore checkpoint.
    Checkpoints written by other MindSpore code (no reid-kd metadata) are read as weights."""
    found = sniff_format(path)
    if found != BACKEND:
        raise CheckpointError(f"'{path}' is a {found} file, not a MindSpore checkpoint")
    try:
        raw = _load_any_name(str(path))
    except Exception as exc:  # protobuf corruption, wrong format
        raise CheckpointError(f"cannot read MindSpore checkpoint '{path}': {first_line(exc)}") from None
    try:
        extra = json.loads(raw.get(META_EXTRA, "{}"))
    except (TypeError, ValueError):
        raise CheckpointError(f"MindSpore checkpoint '{path}' has unreadable '{META_EXTRA}'") from None
    tensors = {k: v.asnumpy().copy() for k, v in raw.items() if isinstance(v, ms.Tensor)}
    optimizer_state = {k[len(OPT_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPT_PREFIX)}
    model_state = {k: v for k, v in tensors.items() if not k.startswith(OPT_PREFIX)}
    mapping = ms_to_torch_names(model_state)
    canonical = {mapping[k]: v for k, v in model_state.items()}
    return canonical, extra, (optimizer_state or None)


def save_checkpoint(path, model, optimizer=None, extra: Optional[dict] = None) -> None:
    """Atomically save model weights, optimizer state and ``extra`` (JSON-serialisable:
    epoch, best metric, config, sampler/RNG state) to ``path`` (must end in .ckpt)."""
    optimizer_state = optimizer.state_arrays() if optimizer is not None else None
    write_file(path, weights.state_to_numpy(model), extra, optimizer_state)


def save_safetensors(path, model, extra: Optional[dict] = None) -> None:
    """Atomically save the model weights (canonical names) as framework-neutral safetensors."""
    write_safetensors(path, weights.state_to_numpy(model), BACKEND, extra)


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Strictly load ``path`` into ``model`` (and ``optimizer`` when given and present in the
    file); returns the ``extra`` dict. A ``.safetensors`` file loads weights only. Errors
    (missing/corrupt file, the other backend's file, missing/unexpected keys, shape
    mismatch) raise CheckpointError naming the path or the key.

    Load before the training step is first compiled: MindSpore 2.8's ``jit`` keeps using
    the old tensors of parameters replaced afterwards with ``set_data``."""
    found = sniff_format(path)
    if found == "torch":
        state, extra = _read_original_mvd(path)
        optimizer_state = None
    elif found == "safetensors":
        state, extra, _ = read_safetensors(path)
        optimizer_state = None
    else:
        state, extra, optimizer_state = read_file(path)
    weights.load_numpy_state(model, state, strict=True)
    if optimizer is not None:
        if optimizer_state is None:
            warnings.warn(f"'{path}' holds no optimizer state: the optimizer starts afresh", stacklevel=2)
        else:
            optimizer.load_state_arrays(optimizer_state, source=f"'{path}'")
    return extra


def read_extra(path) -> dict:
    """The ``extra`` dict (epoch, config, num_classes, ...) of a MindSpore or safetensors
    checkpoint, without a model; a torch file gets the conversion hint."""
    found = sniff_format(path)
    if found == "safetensors":
        return read_safetensors(path)[1]
    if found == "torch":
        return _read_original_mvd(path)[1]
    if found != BACKEND:
        raise wrong_backend_error(path, found, BACKEND)
    return read_file(path)[1]


def _read_original_mvd(path) -> Tuple[Dict[str, np.ndarray], dict]:
    """A checkpoint of the original MVD code (a torch ``.pth.tar``), read through torch when it
    is installed and mapped by ``common.mvd_import``; any other torch file gets the one-line
    conversion hint."""
    try:
        from backends.torch.checkpoint import read_file as read_torch_file
    except ImportError:
        raise wrong_backend_error(path, "torch", BACKEND) from None
    state, extra, _ = read_torch_file(path)
    if extra.get("imported_from") != mvd_import.IMPORTED_FROM:
        raise wrong_backend_error(path, "torch", BACKEND)
    return state, extra
