"""Data-parallel training for the MindSpore backend (policy and launch: common/engine/runtime.py).

Under ``msrun`` (or the dynamic-cluster variables) :func:`init` calls
``mindspore.communication.init()`` (MindSpore's collectives on CPU, NCCL on GPU, HCCL on
Ascend) and sets ``set_auto_parallel_context(parallel_mode=DATA_PARALLEL,
gradients_mean=True)``. Inside ``engine.TrainStep`` (compiled with it in GRAPH mode) the
gradients go through ``nn.DistributedGradReducer`` (mean over the ranks) and the loss terms
through one ``AllReduce`` (:class:`GradientAverager`), so every rank applies the same update
and takes the same decision on a non-finite step. BatchNorm moving statistics stay each
rank's own (rank 0 writes the checkpoint) unless ``train.sync_bn`` converts them.

:class:`SyncBatchNorm` is this project's own: MindSpore's ``nn.SyncBatchNorm`` has no CPU
kernel ("Unsupported op [SyncBatchNorm] on CPU") and ``mint.nn.SyncBatchNorm`` none either
("The kernel BatchNormStats unregistered"); this one all-reduces the per-channel sums with
``ops.AllReduce`` (differentiable) and runs on every device. Mirrors backends/torch/distributed.py.
"""
import mindspore as ms
from mindspore import nn, ops

from common.engine import runtime
from common.errors import DeviceError

__all__ = ["init", "barrier", "shutdown", "GradientAverager", "SyncBatchNorm", "convert_sync_batchnorm"]

_state = {"initialised": False}


def init(target: str = "CPU") -> runtime.Launch:
    """Join the msrun / dynamic-cluster job and return this process's
    :class:`~common.engine.runtime.Launch` as MindSpore reports it (``target`` is the device
    already set by ``device.select_device``; the collective library follows it)."""
    from mindspore.communication import get_group_size, get_rank
    from mindspore.communication import init as comm_init
    launch = runtime.detect("mindspore")
    if not _state["initialised"]:
        try:
            comm_init()
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DeviceError(f"cannot join the msrun job on {target}: {first}") from None
        _state["initialised"] = True
        if get_group_size() > 1:
            ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return runtime.Launch(get_rank(), get_group_size(), launch.local_rank, launch.launcher or "msrun")


def barrier() -> None:
    """Wait for every rank: an AllReduce of one number, read back (the MindSpore 2.8 barrier
    ops log "CPU device is not supported" on CPU)."""
    if _state["initialised"]:
        ops.AllReduce()(ms.Tensor([1.0], ms.float32)).asnumpy()


def shutdown() -> None:
    """The end of a run: the parallel context back to its default (the communication library
    is released when the process exits)."""
    if _state["initialised"]:
        ms.reset_auto_parallel_context()


class GradientAverager(nn.Cell):
    """``construct(grads, terms) -> (grads, terms)``: the means over the ``world_size`` ranks
    of the gradients (``nn.DistributedGradReducer(params, mean=True, degree=world_size)``) and of
    the 1-D loss ``terms`` (``all_reduce``, default ``ops.AllReduce()``, then / world_size)."""

    def __init__(self, params, world_size: int, all_reduce=None):
        super().__init__(auto_prefix=False)
        self.world_size = int(world_size)
        self.reducer = nn.DistributedGradReducer(params, True, self.world_size)
        self.all_reduce = all_reduce if all_reduce is not None else ops.AllReduce()

    def construct(self, grads, terms):
        return self.reducer(grads), self.all_reduce(terms) / self.world_size


class SyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm (1-D or 2-D input, N first, C second) whose training statistics are those of
    the whole global batch: the per-channel sum and sum of squares are all-reduced over the
    ranks (every rank has the same batch shape: the samplers give equal batches). Created by
    :func:`convert_sync_batchnorm` from a BatchNorm1d/2d, whose parameters it keeps; eval mode
    is the plain BatchNorm. ``self.momentum`` is MindSpore's stored 1 - momentum (torch's)."""

    def construct(self, x):
        shape = x.shape
        c = shape[1]
        view = (1, c) + (1,) * (len(shape) - 2)
        if self.training:
            axes = (0,) + tuple(range(2, len(shape)))
            count = self.sync_world
            for d in shape:
                count = count * d
            count = count // c
            sums = self.sync_all_reduce(ops.concat((x.sum(axes), (x * x).sum(axes))))
            mean = sums[:c] / count
            var = ops.relu(sums[c:] / count - mean * mean)
            unbiased = ops.stop_gradient(var) * (count / max(count - 1, 1))
            ops.assign(self.moving_mean, self.moving_mean * (1.0 - self.momentum)
                       + ops.stop_gradient(mean) * self.momentum)
            ops.assign(self.moving_variance, self.moving_variance * (1.0 - self.momentum) + unbiased * self.momentum)
            y = (x - mean.reshape(view)) * ops.rsqrt(var + self.eps).reshape(view)
            return y * self.gamma.reshape(view) + self.beta.reshape(view)
        x4 = x.reshape(shape[0], c, 1, 1) if len(shape) == 2 else x
        return self.bn_infer(x4, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0].reshape(shape)


def convert_sync_batchnorm(model) -> int:
    """Turn every BatchNorm1d/2d cell of ``model`` into a :class:`SyncBatchNorm` in place (the
    same parameters, so an optimizer built before keeps working); returns how many."""
    from mindspore.communication import get_group_size
    world = get_group_size() if _state["initialised"] else 1
    converted = 0
    for _, cell in model.cells_and_names():
        if type(cell) in (nn.BatchNorm1d, nn.BatchNorm2d):
            cell.__class__ = SyncBatchNorm
            cell.sync_world = world
            cell.sync_all_reduce = ops.AllReduce()
            converted += 1
    return converted
