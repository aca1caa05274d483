"""Exported test-feature graphs (``tools/export.py``), framework-free: their formats, where
their input description lives (ONNX ``metadata_props``; for MindIR a sidecar JSON file
``<file>.json``, since MindSpore 2.8 reads no user metadata back from a MindIR) and
:class:`OnnxRunner`, which runs an ONNX file with onnxruntime alone (no torch, no MindSpore).
"""
import json
import os
from typing import Dict, Optional

import numpy as np

from common.errors import ReidError
from common.inference import InputSpec
from common.optional import require

FORMATS = ("onnx", "mindir")
FORMAT_SUFFIX = {"onnx": ".onnx", "mindir": ".mindir"}
# the backend that writes (and, for MindIR, runs) each format
FORMAT_BACKEND = {"onnx": "torch", "mindir": "mindspore"}


def format_of(path: str) -> Optional[str]:
    """'onnx' or 'mindir' from ``path``'s suffix, None otherwise."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return {v: k for k, v in FORMAT_SUFFIX.items()}.get(suffix)


def sidecar_path(path: str) -> str:
    """The JSON file next to a MindIR file that holds its input description."""
    return os.fspath(path) + ".json"


def write_sidecar(path: str, metadata: Dict[str, str]) -> str:
    """Write ``metadata`` next to the MindIR file ``path`` (atomically); returns the JSON path."""
    from common.checkpoint_io import atomic_output
    out = sidecar_path(path)
    with atomic_output(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=1, sort_keys=True)
    return out


def read_spec(path: str) -> InputSpec:
    """The :class:`InputSpec` stored with an exported file (ReidError naming the file when it or
    its description is missing)."""
    path = os.fspath(path)
    fmt = format_of(path)
    if not os.path.isfile(path):
        raise ReidError(f"exported model not found: '{path}'")
    if fmt == "onnx":
        return OnnxRunner(path).spec
    if fmt == "mindir":
        side = sidecar_path(path)
        try:
            with open(side, encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise ReidError(f"'{path}' has no input description '{side}' next to it; export it with "
                            "python -m tools.export") from None
        except (ValueError, UnicodeError) as exc:
            raise ReidError(f"cannot read '{side}': {exc}") from None
        return InputSpec.from_metadata(meta, side)
    raise ReidError(f"'{path}' is not an exported model; expected a .onnx or .mindir file")


def onnx_providers(device: str = "cpu"):
    """onnxruntime execution providers for ``device`` ('cpu', 'cuda'/'gpu'[':N'])."""
    ort = require("onnxruntime", "running an ONNX file")
    name, _, index = str(device).lower().partition(":")
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name in ("cuda", "gpu"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ReidError(f"device {device!r}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise ReidError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")


class OnnxRunner:
    """``runner(x) -> features``: an ONNX file written by tools.export, run by onnxruntime;
    ``spec`` is its :class:`InputSpec` (from ``metadata_props``)."""

    def __init__(self, path: str, device: str = "cpu", threads: int = 0):
        ort = require("onnxruntime", "running an ONNX file")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ReidError(f"exported model not found: '{path}'")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(path, options, providers=onnx_providers(device))
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            text = str(exc).strip().splitlines()
            raise ReidError(f"cannot read ONNX file '{path}': {text[0] if text else type(exc).__name__}") from None
        self.spec = InputSpec.from_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
