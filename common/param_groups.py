"""Optimizer parameter groups, framework-free: which parameter goes to which group.

Two groups, in this order: [backbone group, head group]. A parameter joins the backbone
group when one of the module names on its path (``visible.backbone.layer1.0.conv1.weight``
-> visible, backbone, layer1, 0, conv1) is in ``backbone_modules``; every other trainable
parameter joins the head group. Each group's learning rate is the schedule's rate times its
multiplier (``optim.backbone_lr_mult``, ``optim.head_lr_mult``), e.g. the MVD port's
backbones (BNNeck and classifier included: ``backbone_modules=('backbone', 'neck')``) at
0.1·lr and the IB heads at lr (research/cv/MVD/train.py ``optim``).
"""
from typing import Iterable, List, Sequence, Tuple

GROUPS = ("backbone", "heads")


def in_backbone_group(name: str, backbone_modules: Sequence[str]) -> bool:
    """True when a module on ``name``'s path is one of ``backbone_modules``."""
    return any(part in backbone_modules for part in name.split(".")[:-1])


def split_names(names: Iterable[str], backbone_modules: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(backbone-group names, head-group names), each in the given order."""
    names = list(names)
    return ([n for n in names if in_backbone_group(n, backbone_modules)],
            [n for n in names if not in_backbone_group(n, backbone_modules)])
