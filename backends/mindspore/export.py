"""Export of a network's test feature, MindSpore: MindIR through ``mindspore.export`` with
dynamic batch (and frame) dimensions; mirrors backends/torch/export.py (which writes ONNX).

:class:`FeatureNet` is the graph: ``construct(x) = model.extract(x, **extract_kwargs)``. The
input description (``metadata``) goes to a sidecar ``<file>.json``
(``common.exported.write_sidecar``): MindSpore 2.8 reads no user metadata back from MindIR.

``model.extract`` is compiled in GRAPH mode, so it must follow GRAPH mode's rules (e.g. call
``self.construct(x)``, not ``self(x)``).

MindSpore 2.8 cannot run a dynamic-shape MindIR holding ``nn.MaxPool2d(pad_mode='pad')``
followed by BatchNorm: the padded pool (a 3-D pool between ``unsqueeze``/``squeeze``) loses
the rank, and BatchNorm's rank check then stays in the graph as a ``raise`` primitive that
the loader cannot infer ("Get infer shape function failed, primitive name:raise"). Before
export those cells are replaced by :class:`_FunctionalMaxPool2d` (``ops.max_pool2d``, the same
values), in the exported model in place.
"""
import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from common.checkpoint_io import atomic_output
from common.errors import ReidError
from common.exported import write_sidecar

__all__ = ["FORMAT", "SUFFIX", "FeatureNet", "export_features", "load_exported"]

FORMAT = "mindir"
SUFFIX = ".mindir"


class FeatureNet(nn.Cell):
    """``construct(x) = model.extract(x, **extract_kwargs)``."""

    def __init__(self, model: nn.Cell, extract_kwargs: Optional[Dict[str, str]] = None):
        super().__init__()
        self.model = model
        self.extract_kwargs = dict(extract_kwargs or {})

    def construct(self, x):
        return self.model.extract(x, **self.extract_kwargs)


class _FunctionalMaxPool2d(nn.Cell):
    """A padded ``nn.MaxPool2d`` as ``ops.max_pool2d`` (see the module docstring)."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel_size, self.stride = pool.kernel_size, pool.stride
        self.padding = tuple(pool.padding[-2:])  # stored as (depth, height, width) for the 3-D pool

    def construct(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding)


def _replace_padded_pools(cell: nn.Cell) -> int:
    count = 0
    for index, (name, child) in enumerate(list(cell.name_cells().items())):
        if isinstance(child, nn.MaxPool2d) and getattr(child, "use_pad", False) and not child.return_indices:
            if isinstance(cell, (nn.SequentialCell, nn.CellList)):
                cell[index] = _FunctionalMaxPool2d(child)  # also updates the list construct iterates
            else:
                setattr(cell, name, _FunctionalMaxPool2d(child))
            count += 1
        else:
            count += _replace_padded_pools(child)
    return count


def export_features(model: nn.Cell, path: str, input_shape: Sequence[Optional[int]],
                    extract_kwargs: Optional[Dict[str, str]] = None, metadata: Optional[Dict[str, str]] = None,
                    input_name: str = "images") -> str:
    """Write ``model.extract`` (eval mode) as a MindIR file at ``path`` (which must end in
    ``.mindir``) whose input has ``input_shape`` (None: a dynamic dimension); ``metadata``
    goes to ``<path>.json``. ``input_name`` names the input in the metadata only (MindIR
    inputs are positional). Returns ``path``."""
    path = os.fspath(path)
    if not path.endswith(SUFFIX):
        raise ReidError(f"a MindIR file must end in {SUFFIX}, got '{path}'")
    _replace_padded_pools(model)
    net = FeatureNet(model, extract_kwargs)
    net.set_train(False)
    example = ms.Tensor(shape=[None if d is None else int(d) for d in input_shape], dtype=ms.float32)
    with atomic_output(path, SUFFIX) as tmp:
        try:
            ms.export(net, example, file_name=tmp, file_format="MINDIR")
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ReidError(f"MindIR export of the test feature failed: {str(exc).strip().splitlines()[0]} "
                            "(the model's extract must compile in GRAPH mode: call self.construct(x), not self(x))") \
                from None
    write_sidecar(path, dict(metadata or {}))
    return path


def load_exported(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``run(x) -> features`` of a MindIR file written by :func:`export_features`
    (``nn.GraphCell(mindspore.load(path))``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ReidError(f"exported model not found: '{path}'")
    try:
        graph = nn.GraphCell(ms.load(path))
    except (RuntimeError, ValueError) as exc:
        raise ReidError(f"cannot read MindIR file '{path}': {str(exc).strip().splitlines()[0]}") from None

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return graph(ms.Tensor(np.ascontiguousarray(x, dtype=np.float32))).asnumpy()
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ReidError(f"running MindIR file '{path}' on input {tuple(np.shape(x))} failed: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    return run
