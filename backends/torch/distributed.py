"""Data-parallel training for the PyTorch backend (policy and launch: common/engine/runtime.py).

Under ``torchrun`` every process builds the same network from the same seed, trains on its
own batches and, in each step, averages gradients and loss terms over the ranks with ONE
``all_reduce`` of a flat buffer (:class:`GradientAverager`, called by ``engine.TrainStep``
after the backward). This replaces ``DistributedDataParallel``: the methods' loss functions
call their network directly (VKD's student also calls its teacher), so wrapping the network
would need method-specific code, while the averaged gradient is the same; DDP's overlap of
communication with the backward is what is given up. BatchNorm running statistics stay each
rank's own (the checkpoint, written by rank 0, holds rank 0's, as a DDP run's does) unless
``train.sync_bn`` converts them (:func:`convert_sync_batchnorm`).

:class:`SyncBatchNorm` is this project's own: torch's ``nn.SyncBatchNorm`` only runs on GPU
("SyncBatchNorm expected input tensor to be on GPU"), this one all-reduces the per-channel
sums with a differentiable all-reduce (its gradient is the all-reduce of the gradient) and
runs on every device (gloo on CPU included). The MindSpore twin is backends/mindspore/distributed.py.
"""
import datetime
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from common.engine import runtime
from common.errors import DeviceError

__all__ = ["init", "barrier", "shutdown", "GradientAverager", "SyncBatchNorm", "convert_sync_batchnorm"]

_GROUP_BACKENDS = {"CPU": "gloo", "GPU": "nccl", "Ascend": "hccl"}


def init(target: str = "CPU") -> runtime.Launch:
    """Join the launcher's process group (gloo on CPU, NCCL on GPU, HCCL on Ascend) and return
    this process's :class:`~common.engine.runtime.Launch` as the group reports it."""
    launch = runtime.detect("torch")
    if not dist.is_initialized():
        backend = _GROUP_BACKENDS[target]
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=runtime.COLLECTIVE_TIMEOUT_MINUTES))
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DeviceError(f"cannot join the torchrun process group ({backend}): {first}") from None
    return runtime.Launch(dist.get_rank(), dist.get_world_size(), launch.local_rank, launch.launcher or "torchrun")


def barrier() -> None:
    """Wait for every rank (nothing to do in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (the end of a run)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class GradientAverager:
    """``averager(terms) -> mean terms``: every parameter's gradient and the loss ``terms`` (a
    1-D tensor) become their means over the ``world_size`` ranks, in one ``all_reduce`` (sum)
    of one flat buffer. A parameter without a gradient counts as zero on that rank; it keeps
    ``grad = None`` only when no rank has one (so the optimizer skips it, as in one process).
    ``all_reduce`` (tests) replaces ``torch.distributed.all_reduce``."""

    def __init__(self, params: Sequence[torch.nn.Parameter], world_size: int,
                 all_reduce: Optional[Callable] = None):
        self.params: List[torch.nn.Parameter] = list(params)
        self.world_size = int(world_size)
        self.all_reduce = all_reduce or dist.all_reduce

    def __call__(self, terms: torch.Tensor) -> torch.Tensor:
        ps = self.params
        device = terms.device
        flat = [p.grad.detach().reshape(-1).float() if p.grad is not None
                else torch.zeros(p.numel(), device=device) for p in ps]
        has = torch.tensor([float(p.grad is not None) for p in ps], device=device)
        buffer = torch.cat(flat + [has, terms.detach().float().reshape(-1)])
        self.all_reduce(buffer)
        buffer /= self.world_size
        offset = 0
        for p in ps:
            n = p.numel()
            flat_p = buffer[offset:offset + n]
            offset += n
            if p.grad is not None:
                p.grad.copy_(flat_p.view_as(p.grad))
            else:
                p.grad = flat_p.view_as(p).to(p.dtype).clone()
        share = buffer[offset:offset + len(ps)]
        for p, s in zip(ps, share.tolist()):
            if s == 0.0:
                p.grad = None
        return buffer[offset + len(ps):]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: the gradient of a sum over the ranks is the sum of
    the ranks' gradients (``torch.distributed.nn.functional.all_reduce`` is deprecated)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole global batch: the
    per-channel count, sum and sum of squares are all-reduced (differentiably) over the ranks.
    Created by :func:`convert_sync_batchnorm` from a BatchNorm1d/2d, whose parameters and
    buffers it keeps; in eval mode (or a single process) it is the plain BatchNorm."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_stats = self.training or not self.track_running_stats
        if not (batch_stats and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        count = torch.full((1,), x.numel() // c, dtype=torch.float32, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach().to(self.running_var.dtype), alpha=factor)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module) -> int:
    """Turn every BatchNorm1d/2d of ``model`` into a :class:`SyncBatchNorm` in place (the same
    parameter and buffer objects, so an optimizer built before keeps working); returns how
    many were converted."""
    converted = 0
    for m in model.modules():
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            m.__class__ = SyncBatchNorm
            converted += 1
    return converted
