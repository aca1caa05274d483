"""Benchmark kernels of the MindSpore backend (benchmarks/train_step.py): the bare work a
training step is compared against. Kept out of the training engine."""
import numpy as np
import mindspore as ms

from .engine import check_mode

__all__ = ["forward_backward", "forward_no_grad", "sync"]

_STEPS = {}
_FORWARDS = {}


def sync(device=None) -> None:
    """Wait for queued device work (``mindspore.runtime.synchronize`` when available)."""
    try:
        ms.runtime.synchronize()
    except AttributeError:  # pragma: no cover - older MindSpore
        pass


def forward_backward(module, x, ms_mode: str = "GRAPH", output=None) -> None:
    """Train-mode forward of ``module`` on ``x`` (NCHW) and the gradient of ``sum()`` of its
    output (element ``output`` of a tuple output) w.r.t. its trainable parameters; returns once
    the result is computed. The gradient function is built (and, in GRAPH mode, compiled) once
    per module, mode and output."""
    module.set_train(True)
    key = (id(module), check_mode(ms_mode), output)
    cached = _STEPS.get(key)
    if cached is None or cached[0] is not module:
        def loss_fn(images):
            out = module(images)
            return (out if output is None else out[output]).sum()
        grad_fn = ms.grad(loss_fn, None, module.trainable_params())
        cached = (module, ms.jit(grad_fn) if ms_mode == "GRAPH" else grad_fn)
        _STEPS[key] = cached
    x = x if isinstance(x, ms.Tensor) else ms.Tensor(np.asarray(x, dtype=np.float32))
    grads = cached[1](x)
    grads[0].asnumpy()


def forward_no_grad(module, x, ms_mode: str = "GRAPH") -> None:
    """Train-mode forward of ``module`` on ``x`` (NCHW) without gradients (VKD's frozen
    teacher); compiled once per module in GRAPH mode; returns once the result is computed."""
    module.set_train(True)
    key = (id(module), check_mode(ms_mode))
    cached = _FORWARDS.get(key)
    if cached is None or cached[0] is not module:
        def forward(images):
            return module(images)
        cached = (module, ms.jit(forward) if ms_mode == "GRAPH" else forward)
        _FORWARDS[key] = cached
    x = x if isinstance(x, ms.Tensor) else ms.Tensor(np.asarray(x, dtype=np.float32))
    out = cached[1](x)
    (out[0] if isinstance(out, tuple) else out).asnumpy()  # a re-ID model returns (logits, embedding)
