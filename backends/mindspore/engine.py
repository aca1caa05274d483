"""The MindSpore training-step machinery every method shares, and feature extraction.

:class:`TrainStep` is ``mindspore.value_and_grad(loss_fn, None, optimizer.parameters,
has_aux=True)`` followed by the optimizer update, the whole step wrapped in ``mindspore.jit``
when ``ms_mode == 'GRAPH'``. The forward runs exactly once per step (never a separate forward
before the gradient, the reference port's mistake). The update is applied only when the loss
terms and every gradient are finite (a graph-mode ``if`` on a tensor condition); otherwise the
parameters and the optimizer state stay untouched, and the returned terms say so (a
``gradient: nan`` entry when only the gradient was non-finite). Mirrors backends/torch/engine.py.
"""
from typing import Callable, Dict, Sequence

import numpy as np
import mindspore as ms
from mindspore import ops

__all__ = ["MS_MODES", "TrainStep", "extract", "check_mode"]

MS_MODES = ("GRAPH", "PYNATIVE")

_NUMPY_DTYPES = {ms.float32: np.float32, ms.int64: np.int64, ms.int32: np.int32}


def check_mode(ms_mode: str) -> str:
    if ms_mode not in MS_MODES:
        raise ValueError(f"unknown ms_mode {ms_mode!r}: expected 'GRAPH' or 'PYNATIVE'")
    return ms_mode


def _to_tensor(array, dtype=ms.float32) -> ms.Tensor:
    """A numpy array (or tensor) as a MindSpore tensor of ``dtype``."""
    if isinstance(array, ms.Tensor):
        return array.astype(dtype)
    return ms.Tensor(np.asarray(array, dtype=_NUMPY_DTYPES.get(dtype, np.float32)), dtype)


_all_finite_map = ops.MultitypeFuncGraph("all_finite")


@_all_finite_map.register("Tensor")
def _finite_one(x):
    return ops.isfinite(x).all()


class TrainStep:
    """``step(*arrays)``: ``loss_fn(*tensors)`` returns ``(total, term1, ...)`` named by
    ``names`` (``names[0]`` is 'total'); the gradient of ``total`` w.r.t. the optimizer's
    parameters; the optimizer update when everything is finite. ``dtypes`` gives each input's
    MindSpore dtype (default float32)."""

    def __init__(self, model, optimizer, loss_fn: Callable, names: Sequence[str], dtypes: Sequence = (),
                 ms_mode: str = "GRAPH"):
        if not names or names[0] != "total":
            raise ValueError(f"names must start with 'total', got {names!r}")
        self.model, self.optimizer, self.names, self.dtypes = model, optimizer, tuple(names), tuple(dtypes)
        self.ms_mode = check_mode(ms_mode)
        grad_fn = ms.value_and_grad(loss_fn, None, optimizer.parameters, has_aux=True)
        hyper_map = ops.HyperMap()

        def step_fn(*inputs):
            terms, grads = grad_fn(*inputs)
            finite = ops.isfinite(ops.stack(terms)).all()
            finite = ops.logical_and(finite, ops.stack(hyper_map(_all_finite_map, grads)).all())
            if finite:
                optimizer(grads)
            return terms, finite

        self._step = ms.jit(step_fn) if self.ms_mode == "GRAPH" else step_fn

    def __call__(self, *arrays) -> Dict[str, float]:
        self.model.set_train(True)
        dtypes = self.dtypes or (ms.float32,) * len(arrays)
        terms, finite = self._step(*[_to_tensor(a, d) for a, d in zip(arrays, dtypes)])
        if len(terms) != len(self.names):
            raise ValueError(f"loss_fn returned {len(terms)} terms for names {self.names}")
        out = {n: float(t.asnumpy()) for n, t in zip(self.names, terms)}
        if not bool(finite.asnumpy()) and all(np.isfinite(list(out.values()))):
            out["gradient"] = float("nan")  # finite loss, non-finite gradient: the update was skipped
        return out


def extract(model, images: np.ndarray, batch_size: int = 64, **kwargs) -> np.ndarray:
    """``model.extract(batch, **kwargs)`` over NCHW float32 ``images`` in batches, eval mode
    (PYNATIVE, no gradient is taken); the previous train/eval mode is restored afterwards."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.set_train(False)
    chunks = []
    try:
        for start in range(0, len(images), batch_size):
            batch = ms.Tensor(np.asarray(images[start:start + batch_size], dtype=np.float32))
            chunks.append(model.extract(batch, **kwargs).asnumpy())
    finally:
        model.set_train(was_training)
    if not chunks:
        raise ValueError("extract got no images")
    return np.concatenate(chunks, axis=0)
