"""The PyTorch training-step machinery every method shares, and feature extraction.

:class:`TrainStep` is one forward, one backward and one optimizer step on numpy batches, in
train mode. The update is applied only when the loss terms and every gradient are finite;
otherwise the parameters and the optimizer state stay untouched and the returned terms show
the non-finite values (a ``gradient: nan`` entry when only the gradient was non-finite) (the shared loop then stops or skips: ``common/engine/loop.py``).
The MindSpore twin (backends/mindspore/engine.py) has the same names and behaviour.

Every step follows the process's runtime policy (common/engine/runtime.py) read when the step
is built, so every method gets it without code of its own:

* distributed (torchrun): gradients and loss terms are averaged over the ranks after the
  backward (backends/torch/distributed.py ``GradientAverager``), so every rank takes the same
  decision on a non-finite step and applies the same update; with ``train.sync_bn`` the
  network's BatchNorms become ``SyncBatchNorm``;
* ``--amp bf16|fp16``: forward and loss under ``torch.autocast``; fp16 adds dynamic loss
  scaling (backends/torch/precision.py). An fp16 overflow (finite loss, non-finite gradient)
  skips the step and halves the scale without being reported, until the scale is at most
  ``runtime.MIN_LOSS_SCALE``; then it is reported as a non-finite gradient.
"""
from typing import Callable, Dict, Sequence

import numpy as np
import torch

from common.engine import runtime

from . import distributed, precision
from .device import current_device

__all__ = ["TrainStep", "extract", "model_device"]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the current device when it has none)."""
    for p in model.parameters():
        return p.device
    return current_device()


def _to_tensor(array, device, dtype=torch.float32) -> torch.Tensor:
    """A numpy array (or tensor) as a tensor of ``dtype`` on ``device``."""
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)


def _grads_finite(params) -> bool:
    checks = [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    return bool(torch.stack(checks).all()) if checks else True


class TrainStep:
    """``step(*arrays)``: ``loss_fn(*tensors)`` returns a tuple ``(total, term1, ...)`` named
    by ``names`` (``names[0]`` is 'total'); backward of ``total``; the optimizer step when
    everything is finite. ``dtypes`` gives each input's torch dtype (default float32);
    ``ms_mode`` exists for symmetry with the MindSpore step and is ignored."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                 names: Sequence[str], dtypes: Sequence = (), ms_mode: str = "GRAPH"):
        if not names or names[0] != "total":
            raise ValueError(f"names must start with 'total', got {names!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.names, self.dtypes = tuple(names), tuple(dtypes)
        self.device = model_device(model)
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        rt = runtime.current()
        if rt.sync_bn and rt.world_size > 1:
            distributed.convert_sync_batchnorm(model)
        self.amp = rt.amp
        self.loss_fn = precision.wrap_loss(loss_fn, rt.amp, self.device)
        self.scaler = precision.make_scaler(rt.amp, self.device)
        self.averager = distributed.GradientAverager(self.params, rt.world_size) if rt.world_size > 1 else None
        self.overflows = 0  # fp16 steps skipped by the loss scaler (not reported as non-finite)

    def __call__(self, *arrays) -> Dict[str, float]:
        self.model.train()
        dtypes = self.dtypes or (torch.float32,) * len(arrays)
        tensors = [_to_tensor(a, self.device, d) for a, d in zip(arrays, dtypes)]
        terms = self.loss_fn(*tensors)
        if len(terms) != len(self.names):
            raise ValueError(f"loss_fn returned {len(terms)} terms for names {self.names}")
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(terms[0]) if self.scaler is not None else terms[0]).backward()
        values = torch.stack([t.detach().float() for t in terms])
        if self.averager is not None:
            values = self.averager(values)  # gradients and terms: means over the ranks
        scale = None
        if self.scaler is not None:
            scale = float(self.scaler.get_scale())
            self.scaler.unscale_(self.optimizer)
        terms_finite = bool(torch.isfinite(values).all())
        finite = terms_finite and _grads_finite(self.params)
        if finite:
            self.optimizer.step()
        if self.scaler is not None:
            self.scaler.update()  # halves the scale after a non-finite gradient
        out = {n: float(v) for n, v in zip(self.names, values.tolist())}
        if not finite and terms_finite:
            if scale is not None and scale > runtime.MIN_LOSS_SCALE:
                self.overflows += 1  # an fp16 overflow: the scaler skipped it and lowered the scale
            else:
                out["gradient"] = float("nan")  # finite loss, non-finite gradient: the update was skipped
        return out


def extract(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64, **kwargs) -> np.ndarray:
    """``model.extract(batch, **kwargs)`` over NCHW float32 ``images`` in batches, eval mode,
    no gradients; the model's previous train/eval mode is restored afterwards."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    device = model_device(model)
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = _to_tensor(np.asarray(images[start:start + batch_size], dtype=np.float32), device)
                chunks.append(model.extract(batch, **kwargs).cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("extract got no images")
    return np.concatenate(chunks, axis=0)
