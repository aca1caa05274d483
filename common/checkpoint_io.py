"""Framework-free checkpoint file helpers shared by both backends and tools.convert_weights
(SPEC sections 9 and 11): format sniffing by content, atomic writes, JSON-safe extras, and
the neutral safetensors format (canonical torch names + metadata)."""
import contextlib
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np

from common.errors import CheckpointError

FORMAT_TAG = "reid-kd"
FORMATS = ("torch", "mindspore", "safetensors")
SUFFIX_FORMATS = {".pth": "torch", ".pt": "torch", ".ckpt": "mindspore", ".safetensors": "safetensors"}
FORMAT_SUFFIX = {"torch": ".pth", "mindspore": ".ckpt", "safetensors": ".safetensors"}
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (framework errors are often multi-line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sniff_format(path) -> str:
    """'torch', 'mindspore' or 'safetensors' from the file's first bytes (not its name):
    torch.save writes a zip archive (or a pickle, ``0x80``), safetensors starts with an
    8-byte little-endian header length followed by ``{``, a MindSpore checkpoint is a
    protobuf whose first field tag is ``0x0a``. CheckpointError for a missing, empty or
    unrecognised file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: '{path}'")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"checkpoint '{path}' is empty")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        size = int.from_bytes(head[:8], "little")
        if 0 < size <= min(MAX_SAFETENSORS_HEADER, os.path.getsize(path) - 8):
            return "safetensors"
    if head[:1] == b"\x0a":
        return "mindspore"
    raise CheckpointError(f"'{path}' is not a recognised checkpoint (expected a torch .pth, "
                          "a MindSpore .ckpt or a .safetensors file)")


def suggested_output(path, fmt: str) -> str:
    """``path`` with its suffix replaced by the usual suffix of ``fmt`` (for error hints);
    ``<root>.<fmt><suffix>`` when that would be ``path`` itself (a file whose name does not
    match its content)."""
    path = os.fspath(path)
    root, _ = os.path.splitext(path)
    out = root + FORMAT_SUFFIX[fmt]
    if os.path.abspath(out) == os.path.abspath(path):
        out = f"{root}.{fmt}{FORMAT_SUFFIX[fmt]}"
    return out


def wrong_backend_error(path, found: str, wanted: str) -> CheckpointError:
    """The one-line error for a checkpoint written by the other backend (contract)."""
    return CheckpointError(f"'{path}' is a {found} checkpoint; convert it with: "
                           f"python -m tools.convert_weights {path} {suggested_output(path, wanted)}")


@contextlib.contextmanager
def atomic_output(path, suffix: str = ""):
    """Yield a temporary name ``<path>.tmp-<pid><suffix>`` in the destination folder (created
    if needed); move it onto ``path`` with ``os.replace`` when the block succeeds, remove it
    when the block raises. ``suffix`` serves writers that insist on an extension (.ckpt)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if exc.filename is None:  # name the file (MindSpore's and numpy's writers do not)
            raise OSError(exc.errno, exc.strerror or str(exc), path) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def write_failure(path, exc: BaseException, needed: int = 0) -> BaseException:
    """The error to raise when a framework's writer failed on ``path`` with a message that
    does not say why (torch reports a full disk as ``RuntimeError: ... unexpected pos``): an
    ``OSError(ENOSPC)`` naming the file when the folder has less than ``needed`` bytes (or
    under 1 MiB) free, else a CheckpointError with the writer's first line."""
    import errno
    import shutil
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < max(int(needed), 1 << 20):
        return OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
    return CheckpointError(f"cannot write checkpoint '{path}': {first_line(exc)}")


def default_file_mode() -> int:
    """The mode a newly created file gets under the current umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def jsonable(extra: Optional[dict], what: str = "extra") -> dict:
    """``extra`` after a JSON round trip (tuples become lists), so both backends store and
    return the same thing; TypeError-free CheckpointError when it is not JSON-serialisable."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"checkpoint {what} must be a dict, got {type(extra).__name__}")
    try:
        return json.loads(json.dumps(extra))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {what} must be JSON-serialisable: {exc}") from None


def read_safetensors(path) -> Tuple[Dict[str, np.ndarray], dict, str]:
    """(state under canonical names, extra dict, writing backend) of a safetensors file."""
    from safetensors import safe_open
    path = os.fspath(path)
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # corrupt header or payload
        raise CheckpointError(f"cannot read safetensors file '{path}': {first_line(exc)}") from None
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except ValueError:
        raise CheckpointError(f"safetensors file '{path}' has unreadable 'extra' metadata") from None
    return state, extra, meta.get("backend", "unknown")


def write_safetensors(path, state: Dict[str, np.ndarray], backend: str, extra: Optional[dict] = None) -> None:
    """Atomically write ``state`` (canonical names) with metadata {'format': 'reid-kd',
    'backend': backend, 'extra': JSON}."""
    from safetensors.numpy import save_file
    meta = {"format": FORMAT_TAG, "backend": backend, "extra": json.dumps(jsonable(extra))}
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    with atomic_output(path) as tmp:
        save_file(arrays, tmp, metadata=meta)
