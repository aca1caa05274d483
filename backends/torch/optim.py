"""Optimizers for the PyTorch backend (SPEC section 8).

Two parameter groups, in this order: [backbone parameters, every other trainable
parameter] at ``lr`` and ``lr·head_lr_mult`` (MVD: heads at 10·lr). Adam is
``torch.optim.Adam`` (betas 0.9/0.999, eps 1e-8, L2 weight decay added to the gradient, not
AdamW); SGD is ``torch.optim.SGD`` with momentum, dampening 0, nesterov False. Frozen
parameters (``requires_grad`` False, e.g. the BNNeck bias) are left out. The MindSpore
backend re-implements exactly these update formulas (backends/mindspore/optim.py).
"""
from typing import List

import torch
from torch import nn

OPTIMIZERS = ("adam", "sgd")


def is_backbone(name: str) -> bool:
    """SPEC 8 grouping rule: a parameter belongs to a backbone when its name starts with
    'backbone.' or contains '.backbone.'."""
    return name.startswith("backbone.") or ".backbone." in name


def split_groups(model: nn.Module):
    """[backbone params, other trainable params] of ``model``, in ``named_parameters`` order."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [p for n, p in trainable if is_backbone(n)]
    heads = [p for n, p in trainable if not is_backbone(n)]
    return [backbone, heads]


def build_optimizer(model: nn.Module, name: str = "adam", lr: float = 3.5e-4, weight_decay: float = 5e-4,
                    momentum: float = 0.9, head_lr_mult: float = 10.0) -> torch.optim.Optimizer:
    """Two parameter groups [backbone at ``lr``, the rest at ``lr·head_lr_mult``] (SPEC 8);
    'adam' or 'sgd' as described in the module docstring. The multi-tensor
    (``foreach``) update is used on every device: the same formula as the single-tensor one
    (mirrored by the MindSpore backend) in 2.7x less time on CPU (ResNet-50 x 3 encoders:
    0.22 s against 0.60 s per Adam step)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    backbone, heads = split_groups(model)
    if not backbone and not heads:
        raise ValueError("optimizer got no trainable parameters")
    groups = [{"params": backbone, "lr": lr}, {"params": heads, "lr": lr * head_lr_mult}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=weight_decay, foreach=True)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, dampening=0.0,
                           weight_decay=weight_decay, nesterov=False, foreach=True)


def set_group_lrs(optimizer: torch.optim.Optimizer, lrs: List[float]) -> None:
    """Write one learning rate per parameter group (in group order)."""
    lrs = [float(v) for v in lrs]
    if len(lrs) != len(optimizer.param_groups):
        raise ValueError(f"expected {len(optimizer.param_groups)} learning rates (one per group), got {len(lrs)}")
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr


def get_group_lrs(optimizer: torch.optim.Optimizer) -> List[float]:
    """Current learning rate of every parameter group, in group order."""
    return [float(g["lr"]) for g in optimizer.param_groups]
