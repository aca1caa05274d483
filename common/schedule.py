"""Learning-rate schedules, framework-neutral (SPEC section 8).

Backends read the learning rate for an epoch from here and write it into their optimizer's
parameter groups, so both frameworks follow exactly the same schedule.
"""


def mvd_lr(epoch: int, base_lr: float, warmup: int = 5, start_decay: int = 15,
           end_decay: int = 27, factor: float = 0.5) -> float:
    """MVD seed schedule (SPEC 8, MVD): linear warm-up ``base·(epoch+1)/warmup`` for the first
    ``warmup`` epochs, then ``base`` until ``start_decay``, ``base·factor`` until ``end_decay``
    and ``base·factor²`` afterwards. ``epoch`` is 0-based."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if warmup > 0 and epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    if epoch < start_decay:
        return base_lr
    if epoch < end_decay:
        return base_lr * factor
    return base_lr * factor * factor


def multistep_lr(epoch: int, base_lr: float, milestones=(), gamma: float = 0.1) -> float:
    """MultiStepLR (VKD, KD-REID): ``base·gamma^(number of milestones <= epoch)``."""
    return base_lr * gamma ** sum(1 for m in milestones if epoch >= m)


def group_lrs(lr: float, head_lr_mult: float, groups=("backbone", "heads")) -> list:
    """Per-group learning rates: backbone at ``lr``, heads at ``head_lr_mult·lr`` (SPEC 8 MVD)."""
    return [lr if g == "backbone" else lr * head_lr_mult for g in groups]
