"""SyncBN test worker: ``torchrun|msrun ... tests/dist_syncbn_worker.py BACKEND MODE OUT_DIR``.

Rank r holds rows ``2r, 2r+1`` of a fixed global batch x (4, 3, 2, 2) and of fixed weights w.
Its converted BatchNorm2d (``distributed.convert_sync_batchnorm``) computes ``sum(bn(x_r) * w_r)``
and its gradients; the parameter gradients are summed over the ranks (the gradient of the
global loss). Every rank also runs a plain BatchNorm2d on the whole x in one process. The
largest differences (output rows, input gradient rows, summed parameter gradients, running
statistics after the step) go to ``OUT_DIR/rank<r>.json``. Used by tests/test_sync_bn.py."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

X = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32) * 2 + 1
W = np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32)


def _torch(rank, rows):
    import torch
    from backends.torch import distributed
    torch.distributed.init_process_group("gloo")

    def run(bn, x, w):
        x = torch.tensor(x, requires_grad=True)
        y = bn(x)
        (y * torch.tensor(w)).sum().backward()
        return (y.detach().numpy(), x.grad.numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy(),
                bn.running_mean.numpy(), bn.running_var.numpy())
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    assert distributed.convert_sync_batchnorm(net) == 1
    mine = list(run(net[0], X[rows], W[rows]))
    for g in mine[2:4]:
        torch.distributed.all_reduce(torch.from_numpy(g))
    whole = run(torch.nn.BatchNorm2d(3), X, W)
    distributed.shutdown()
    return mine, whole


def _mindspore(rank, rows, mode):
    import mindspore as ms
    from mindspore import nn
    from backends.mindspore import device, distributed
    device.set_mode(mode)
    device.select_device("CPU", 0)
    distributed.init("CPU")

    def run(bn, x, w, reduce):
        bn.set_train(True)
        weights = bn.trainable_params()

        def loss(x):
            y = bn(x)
            return (y * ms.Tensor(w)).sum(), y
        grad = ms.value_and_grad(loss, 0, weights, has_aux=True)
        grad = ms.jit(grad) if mode == "GRAPH" else grad
        (_, y), (gx, gw) = grad(ms.Tensor(x))
        gw = [reduce(g).asnumpy() for g in gw]
        return (y.asnumpy(), gx.asnumpy(), gw[0], gw[1], bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy())
    net = nn.SequentialCell([nn.BatchNorm2d(3, momentum=0.9)])
    assert distributed.convert_sync_batchnorm(net) == 1
    mine = run(net[0], X[rows], W[rows], ms.ops.AllReduce())
    return mine, run(nn.BatchNorm2d(3, momentum=0.9), X, W, lambda g: g)


def main(backend, mode, out):
    rank = int(os.environ.get("RANK", os.environ.get("RANK_ID", "0")))
    rows = slice(2 * rank, 2 * rank + 2)
    mine, whole = _torch(rank, rows) if backend == "torch" else _mindspore(rank, rows, mode)
    names = ("output", "input_grad", "weight_grad", "bias_grad", "running_mean", "running_var")
    errors = {}
    for name, a, b in zip(names, mine, whole):
        b = b[rows] if name in ("output", "input_grad") else b
        errors[name] = float(np.abs(np.asarray(a) - np.asarray(b)).max())
    errors["bias_grad_size"] = float(np.abs(whole[3]).max())
    errors["running_var_moved"] = float(np.abs(whole[5] - 1.0).max())
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(errors, f)
    return 0


if __name__ == "__main__":
    if os.environ.get("MS_ROLE") == "MS_SCHED":  # msrun's scheduler: join the job, then it ends
        from backends.mindspore import distributed as _d
        _d.init("CPU")
    sys.exit(main(*sys.argv[1:4]))
