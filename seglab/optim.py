"""Optimizers, and learning-rate schedules stepped once per optimizer step (not per epoch).

Segmentation recipes (DeepLab, mmsegmentation) define their schedules in iterations: a linear warm-up
followed by a polynomial or cosine decay down to ``min_lr_ratio`` of the base learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from seglab.errors import ConfigError

ScheduleName = Literal["poly", "cosine", "constant"]
OptimizerName = Literal["adamw", "adam", "sgd"]


def build_optimizer(
    name: OptimizerName, groups: list[dict], lr: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """One of torch's optimizers over parameter groups (which carry their own lr and decay)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"model.optimizer: unknown optimizer {name!r}; choose adamw, adam or sgd")


def lr_factor(
    schedule: ScheduleName,
    total_steps: int,
    warmup_steps: int = 0,
    power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> Callable[[int], float]:
    """The multiplier of the base learning rate at optimizer step ``step`` (for ``LambdaLR``)."""
    if total_steps <= 0:
        raise ConfigError(f"the schedule needs a finite number of steps, got {total_steps}")
    if schedule not in ("poly", "cosine", "constant"):
        raise ConfigError(
            f"model.scheduler: unknown schedule {schedule!r}; choose poly, cosine or constant"
        )
    warmup_steps = min(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "poly":
            decay = (1.0 - progress) ** power
        elif schedule == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            decay = 1.0
        return min_lr_ratio + (1.0 - min_lr_ratio) * decay

    return factor
