"""Optional dependencies, imported in one place.

:func:`require` imports a package that only some features need (ONNX export, pictures,
TensorBoard, CUHK03's ``.mat``) and turns its absence into one line naming the extra of
``pyproject.toml`` that installs it.

It also defuses the protobuf trap: when ``onnx``, ``onnxscript`` or TensorBoard's writers load
protobuf's C++ ("upb") implementation before ``mindspore`` is imported, ``import mindspore``
fails afterwards ("Descriptors cannot be created directly"). Importing mindspore first avoids
it, so nothing is done when mindspore is already loaded; otherwise, while protobuf is not
loaded yet, the pure-Python implementation is selected
(``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``) so that a later ``import mindspore``
works in the same process.
"""
import importlib
import os
import sys

from common.errors import ReidError

# modules that load protobuf's descriptors at import time
PROTOBUF_USERS = ("onnx", "onnxscript", "tensorboardX", "torch.utils.tensorboard", "tensorboard")
# the pip extra that installs each optional top-level package
EXTRAS = {"onnx": "export", "onnxruntime": "export", "onnxscript": "export", "tensorboardX": "viz",
          "matplotlib": "viz", "h5py": "data", "torch": "torch", "mindspore": "mindspore"}


class MissingDependency(ReidError):
    """An optional package is not installed."""


def protobuf_safe_for_mindspore() -> None:
    """Make a later ``import mindspore`` work after protobuf users (module docstring)."""
    if "mindspore" in sys.modules or "google.protobuf" in sys.modules:
        return
    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


def require(module: str, purpose: str):
    """Import and return ``module``; a missing package raises :class:`MissingDependency`
    naming ``purpose`` and the extra to install (``pip install 'reid-kd[EXTRA]'``)."""
    top = module.split(".")[0]
    if module in PROTOBUF_USERS or top in PROTOBUF_USERS:
        protobuf_safe_for_mindspore()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: show that
        extra = EXTRAS.get(top)
        how = f"pip install 'reid-kd[{extra}]' (or make install)" if extra else f"pip install {top}"
        raise MissingDependency(f"{purpose} needs the '{top}' package, which is not installed: {how}") from None
