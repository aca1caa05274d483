"""The MindSpore training-step machinery every method shares, and feature extraction.

:class:`TrainStep` is ``mindspore.value_and_grad(loss_fn, None, optimizer.parameters,
has_aux=True)`` followed by the optimizer update, the whole step wrapped in ``mindspore.jit``
when ``ms_mode == 'GRAPH'``. The forward runs exactly once per step (never a separate forward
before the gradient, the reference port's mistake). The update is applied only when the loss
terms and every gradient are finite (a graph-mode ``if`` on a tensor condition); otherwise the
parameters and the optimizer state stay untouched, and the returned terms say so (a
``gradient: nan`` entry when only the gradient was non-finite). Mirrors backends/torch/engine.py.

Every step follows the process's runtime policy (common/engine/runtime.py) read when the step
is built: distributed (msrun), gradients and loss terms are averaged over the ranks inside the
step (backends/mindspore/distributed.py ``GradientAverager``: ``nn.DistributedGradReducer``
and one ``AllReduce``), and ``train.sync_bn`` converts the BatchNorms; ``--amp`` runs the loss
function under ``amp.auto_mixed_precision(..., 'auto', dtype)`` with, for fp16, a
``DynamicLossScaler`` (backends/mindspore/precision.py). An fp16 overflow (finite loss,
non-finite gradient) skips the step and halves the scale without being reported, until the
scale is at most ``runtime.MIN_LOSS_SCALE``; then it is reported as a non-finite gradient.
"""
from typing import Callable, Dict, Sequence

import numpy as np
import mindspore as ms
from mindspore import ops

from common.engine import runtime

from . import distributed, precision

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
        rt = runtime.current()
        if rt.sync_bn and rt.world_size > 1:
            distributed.convert_sync_batchnorm(model)
        self.amp = rt.amp
        loss_fn = precision.wrap_loss(loss_fn, rt.amp)
        self.scaler = scaler = precision.make_scaler(rt.amp)
        scaling = scaler is not None
        averager = distributed.GradientAverager(optimizer.parameters, rt.world_size) if rt.world_size > 1 else None
        averaging = averager is not None
        self.overflows = 0  # fp16 steps skipped by the loss scaler (not reported as non-finite)

        def scaled_loss(*inputs):
            terms = loss_fn(*inputs)
            return (scaler.scale(terms[0]),) + tuple(terms)

        grad_fn = ms.value_and_grad(scaled_loss if scaling else loss_fn, None, optimizer.parameters, has_aux=True)
        hyper_map = ops.HyperMap()

        def step_fn(*inputs):
            out, grads = grad_fn(*inputs)
            terms = out[1:] if scaling else out
            values = ops.stack([ops.cast(t, ms.float32) for t in terms])
            if scaling:
                grads = scaler.unscale(grads)
            if averaging:
                grads, values = averager(grads, values)
            grads_finite = ops.stack(hyper_map(_all_finite_map, grads)).all()
            finite = ops.logical_and(ops.isfinite(values).all(), grads_finite)
            if scaling:
                scaler.adjust(grads_finite)
            if finite:
                optimizer(grads)
            return values, finite

        self._step = ms.jit(step_fn) if self.ms_mode == "GRAPH" else step_fn

    def __call__(self, *arrays) -> Dict[str, float]:
        self.model.set_train(True)
        dtypes = self.dtypes or (ms.float32,) * len(arrays)
        scale = float(self.scaler.scale_value.asnumpy()) if self.scaler is not None else None  # this step's
        values, finite = self._step(*[_to_tensor(a, d) for a, d in zip(arrays, dtypes)])
        values = values.asnumpy().tolist()
        if len(values) != len(self.names):
            raise ValueError(f"loss_fn returned {len(values)} terms for names {self.names}")
        out = {n: float(v) for n, v in zip(self.names, values)}
        if not bool(finite.asnumpy()) and all(np.isfinite(values)):
            if scale is not None and scale > runtime.MIN_LOSS_SCALE:
                self.overflows += 1  # an fp16 overflow: skipped, the scale lowered
            else:
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
