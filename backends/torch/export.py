"""Export of a network's test feature, PyTorch: ONNX through ``torch.onnx.export`` (the
``torch.export``-based exporter) with dynamic batch (and frame) dimensions; the MindSpore
twin (backends/mindspore/export.py) writes MindIR. ``tools/export.py`` drives both.

:class:`FeatureNet` is the graph: ``forward(x) = model.extract(x, **extract_kwargs)`` (the
kwargs, e.g. MVD's modality, are fixed at export time). The file carries ``metadata`` (the
input description of :mod:`common.inference`) in its ``metadata_props``; the weights are
stored inside the file (not as external data), which ONNX allows up to 2 GB.
"""
import contextlib
import logging
import os
import warnings
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from common.checkpoint_io import atomic_output
from common.errors import ReidError
from common.optional import require

__all__ = ["FORMAT", "SUFFIX", "FeatureNet", "export_features", "load_exported"]

FORMAT = "onnx"
SUFFIX = ".onnx"
# names of the dynamic dimensions, in order (batch, then frames for clips)
_DIM_NAMES = ("batch", "frames")


class FeatureNet(nn.Module):
    """``forward(x) = model.extract(x, **extract_kwargs)``."""

    def __init__(self, model: nn.Module, extract_kwargs: Optional[Dict[str, str]] = None):
        super().__init__()
        self.model = model
        self.extract_kwargs = dict(extract_kwargs or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract(x, **self.extract_kwargs)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's notes that concern it, not the user (torchvision's missing operators,
    its own deprecation warnings), silenced while it runs."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def _example(input_shape: Sequence[Optional[int]]) -> torch.Tensor:
    """A random input of ``input_shape`` with 2 for every dynamic (None) dimension (torch.export
    specialises dimensions of size 0 and 1)."""
    shape = [2 if d is None else int(d) for d in input_shape]
    return torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def export_features(model: nn.Module, path: str, input_shape: Sequence[Optional[int]],
                    extract_kwargs: Optional[Dict[str, str]] = None, metadata: Optional[Dict[str, str]] = None,
                    input_name: str = "images") -> str:
    """Write ``model.extract`` (eval mode, CPU) as an ONNX file at ``path`` whose input
    ``input_name`` has ``input_shape`` (None: a dynamic dimension) and whose output is
    ``features`` (N, D); ``metadata`` goes to ``metadata_props``. Returns ``path``."""
    require("onnxscript", "ONNX export")  # torch's exporter needs it (and the protobuf order: common/optional.py)
    net = FeatureNet(model, extract_kwargs).cpu().eval()
    dynamic = [i for i, d in enumerate(input_shape) if d is None]
    dims = {i: torch.export.Dim(_DIM_NAMES[k] if k < len(_DIM_NAMES) else f"dim{i}", min=1)
            for k, i in enumerate(dynamic)}
    with torch.no_grad(), _quiet_exporter():
        try:
            program = torch.onnx.export(net, (_example(input_shape),), None, input_names=[input_name],
                                        output_names=["features"], dynamic_shapes={"x": dims}, dynamo=True,
                                        external_data=False, verbose=False)
        except Exception as exc:  # the exporter's errors are long; the first line names the operator
            raise ReidError(f"ONNX export of the test feature failed: {str(exc).strip().splitlines()[0]}") from None
    program.model.metadata_props.update({str(k): str(v) for k, v in (metadata or {}).items()})
    with atomic_output(path, SUFFIX) as tmp:
        program.save(tmp, external_data=False)
    return os.fspath(path)


def load_exported(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``run(x) -> features`` of an ONNX file written by :func:`export_features`, on the CPU
    (through onnxruntime; no torch is needed to run one: common.feature_extractor)."""
    from common.exported import OnnxRunner
    return OnnxRunner(path)
