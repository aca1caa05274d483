"""Learning-rate schedules, framework-neutral.

Backends read the learning rate for an epoch from here and write it into their optimizer's
parameter groups (``set_group_lrs``), so both frameworks follow exactly the same schedule.
Every function takes the 0-based epoch; the MVD seed's flags (``--start-decay``,
``--end-decay``, ``--warmup-steps``) keep the seed's 1-based meaning.
"""
from bisect import bisect_right
from typing import Sequence

from common.errors import ConfigError


def mvd_lr(epoch: int, base_lr: float, warmup: int = 5, start_decay: int = 15, end_decay: int = 27,
           factor: float = 0.1, decay: str = "cascade") -> float:
    """The MVD MindSpore port's ``LRScheduler`` (research/cv/MVD/src/utils.py), in 1-based
    epochs ``e = epoch + 1``: ``base·e/warmup`` while ``e < warmup``; ``base`` until
    ``start_decay``; then

    * ``decay='cascade'`` (the port's loop, its default behaviour): ``base·factor^(e -
      start_decay + 1)`` for ``start_decay <= e <= end_decay``, and the value of
      ``end_decay`` afterwards (a factor of 0.1 applied 13 times between epochs 15 and 27);
    * ``decay='step'``: ``base·factor`` for ``start_decay <= e <= end_decay`` and
      ``base·factor²`` afterwards.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if decay not in ("cascade", "step"):
        raise ConfigError(f"unknown decay {decay!r}; expected 'cascade' or 'step'")
    e = epoch + 1
    if warmup > 0 and e < warmup:
        return base_lr * e / warmup
    if e < start_decay:
        return base_lr
    if decay == "step":
        return base_lr * (factor if e <= end_decay else factor * factor)
    return base_lr * factor ** (min(e, end_decay) - start_decay + 1)


def warmup_multistep_lr(epoch: int, base_lr: float, milestones: Sequence[int] = (210,), gamma: float = 0.1,
                        warmup_factor: float = 0.01, warmup: int = 10, step_offset: int = 0) -> float:
    """``WarmupMultiStepLR`` of the original MVD code (utlis.py) stepped once per epoch:
    with ``L = epoch + step_offset``, ``base · w(L) · gamma^(number of milestones <= L)`` where
    ``w(L) = warmup_factor·(1 - L/warmup) + L/warmup`` while ``L < warmup``, else 1.
    ``step_offset=1`` reproduces the original's ``scheduler.step()`` called *before* each
    epoch (epoch 0 trains with the rate of step 1)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    last = epoch + step_offset
    w = 1.0
    if warmup > 0 and last < warmup:
        alpha = last / warmup
        w = warmup_factor * (1 - alpha) + alpha
    return base_lr * w * gamma ** bisect_right(sorted(milestones), last)


def multistep_lr(epoch: int, base_lr: float, milestones: Sequence[int] = (), gamma: float = 0.1,
                 step_offset: int = 0) -> float:
    """MultiStepLR (VKD, KD-REID): ``base·gamma^(number of milestones <= epoch + step_offset)``."""
    return base_lr * gamma ** sum(1 for m in milestones if epoch + step_offset >= m)


def epoch_lr(schedule: dict, base_lr: float, epoch: int) -> float:
    """The base learning rate of ``epoch`` for a config ``schedule`` section."""
    kind = schedule["kind"]
    if kind == "mvd":
        return mvd_lr(epoch + schedule["step_offset"], base_lr, schedule["warmup_steps"], schedule["start_decay"],
                      schedule["end_decay"], schedule["decay_factor"], schedule["decay"])
    if kind == "warmup_multistep":
        return warmup_multistep_lr(epoch, base_lr, schedule["milestones"], schedule["gamma"],
                                   schedule["warmup_factor"], schedule["warmup_steps"], schedule["step_offset"])
    if kind == "multistep":
        return multistep_lr(epoch, base_lr, schedule["milestones"], schedule["gamma"], schedule["step_offset"])
    raise ConfigError(f"unknown schedule.kind {kind!r}")


def check_schedule(schedule: dict) -> None:
    """Cross-key checks of a ``schedule`` section (ConfigError naming the keys)."""
    if schedule["kind"] == "mvd" and schedule["start_decay"] > schedule["end_decay"]:
        raise ConfigError(f"schedule.start_decay ({schedule['start_decay']}) must be <= schedule.end_decay "
                          f"({schedule['end_decay']})")
    if list(schedule["milestones"]) != sorted(schedule["milestones"]):
        raise ConfigError(f"schedule.milestones must be increasing, got {schedule['milestones']}")


def group_lrs(lr: float, mults: Sequence[float]) -> list:
    """Per-group learning rates: ``lr`` times each group's multiplier."""
    return [lr * m for m in mults]
