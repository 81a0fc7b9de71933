"""Optimizers and learning-rate schedules: injected, with seglab's parameter groups and schedules.

``SegmentationModule(optimizer=..., lr_scheduler=...)`` takes Lightning's ``OptimizerCallable`` and
``LRSchedulerCallable``: any ``torch.optim`` class or one from another package (``--model.optimizer
RAdam``), any torch scheduler or one of seglab's. The optimizer gets seglab's parameter groups
(``seglab.models.param_groups``); every group carries ``lr_mult`` (the encoder's
``backbone_lr_mult``), applied on top of whatever the schedule sets (``scheduled_lrs``), so that the
encoder learns at ``lr * backbone_lr_mult`` at every step, whatever the schedule, OneCycleLR
included.

Segmentation recipes (DeepLab, mmsegmentation) define their schedules in iterations: a linear
warm-up followed by a polynomial or cosine decay down to ``min_lr_ratio`` of the base learning
rate. seglab's ``PolyLR``, ``CosineLR`` and ``WarmupLR`` are those, stepped every optimizer step;
they take the run's length from the trainer (``total_steps`` left unset), so a warm-up given as
``warmup_ratio`` keeps its share when ``max_steps`` is cut. Any scheduler whose constructor takes
``total_steps`` (torch's ``OneCycleLR`` too) gets the run's optimizer steps when it was not given,
and is stepped every optimizer step; other schedulers are stepped every epoch (Lightning's
default), and ``ReduceLROnPlateau`` watches ``val/loss``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from seglab.errors import ConfigError

OptimizerFactory = Callable[[Any], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


class WarmupLR(LRScheduler):
    """Linear warm-up to the base learning rate, then constant; the base of ``PolyLR`` and
    ``CosineLR``, which decay after the warm-up. Stepped every optimizer step.

    Args:
        optimizer: the optimizer.
        total_steps: optimizer steps of the run; ``None``: the run's (``SegmentationModule`` gives
            ``trainer.estimated_stepping_batches``).
        warmup_steps: optimizer steps of linear warm-up, from ``1 / warmup_steps`` of the rate.
        warmup_ratio: the warm-up as a share of ``total_steps`` instead (``0.03``: the first 3%).
        min_lr_ratio: the decay ends at ``min_lr_ratio`` of the base rate.
        last_epoch: torch's (the index of the last step; -1 to start).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int | None = None,
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        name = type(self).__name__
        if total_steps is None or not 0 < total_steps < math.inf:
            raise ConfigError(
                f"{name} needs a finite number of optimizer steps (trainer.max_steps or "
                f"trainer.max_epochs), got total_steps={total_steps}"
            )
        if warmup_ratio is not None:
            if warmup_steps:
                raise ConfigError(f"{name}: give warmup_steps or warmup_ratio, not both")
            if not 0 <= warmup_ratio < 1:
                raise ConfigError(f"{name}.warmup_ratio must be in [0, 1), got {warmup_ratio}")
            warmup_steps = round(warmup_ratio * total_steps)
        if warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
            raise ConfigError(
                f"{name}: warmup_steps must be >= 0 and min_lr_ratio in [0, 1], got "
                f"{warmup_steps} and {min_lr_ratio}"
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = min(int(warmup_steps), self.total_steps)
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def decay(self, progress: float) -> float:
        """The multiplier after the warm-up at ``progress`` in [0, 1] of the decay phase."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """Where the schedule is, not its settings: a resumed run whose length changed (a larger
        ``max_steps``) follows the schedule of its own length from the step it resumes at, instead
        of the saved one's (which would hold the rate at its end for the added steps)."""
        settings = set(inspect.signature(type(self)).parameters) - {"last_epoch"}
        return {k: v for k, v in super().state_dict().items() if k not in settings}

    def factor(self, step: int) -> float:
        """The multiplier of the base learning rate at optimizer step ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * self.decay(progress)

    def get_lr(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base * factor for base in self.base_lrs]


class PolyLR(WarmupLR):
    """Warm-up, then ``(1 - progress) ** power`` down to ``min_lr_ratio`` (DeepLab's "poly").

    Args:
        power: the exponent.
        total_steps, warmup_steps, warmup_ratio, min_lr_ratio: as ``WarmupLR``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        power: float = 0.9,
        total_steps: int | None = None,
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if not power > 0:
            raise ConfigError(f"PolyLR.power must be positive, got {power}")
        self.power = power
        super().__init__(
            optimizer, total_steps, warmup_steps, warmup_ratio, min_lr_ratio, last_epoch
        )

    def decay(self, progress: float) -> float:
        return (1.0 - progress) ** self.power


class CosineLR(WarmupLR):
    """Warm-up, then half a cosine down to ``min_lr_ratio``; arguments as ``WarmupLR``."""

    def decay(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def factory_target(factory: Callable[..., Any]) -> tuple[type | None, dict[str, Any]]:
    """The class a factory builds and the keyword arguments it was given: the factory itself, a
    ``functools.partial`` of the class, or jsonargparse's partial (the class among its
    arguments)."""
    if isinstance(factory, type):
        return factory, {}
    if isinstance(factory, functools.partial):
        target = factory.func
        if not isinstance(target, type):
            target = next((a for a in factory.args if isinstance(a, type)), None)
        return target, dict(factory.keywords)
    return None, {}


def takes_total_steps(factory: SchedulerFactory) -> bool:
    """Whether the schedule a factory builds is measured in optimizer steps (``total_steps``)."""
    target, _ = factory_target(factory)
    return target is not None and "total_steps" in inspect.signature(target).parameters


def given_default(factory: OptimizerFactory, name: str) -> tuple[Any, bool]:
    """The value of ``name`` a factory was given, and whether it differs from the class's default
    (a value set on purpose). ``(None, False)`` when the factory does not say."""
    target, keywords = factory_target(factory)
    if target is None or name not in keywords:
        return None, False
    parameter = inspect.signature(target).parameters.get(name)
    default = parameter.default if parameter is not None else inspect.Parameter.empty
    return keywords[name], keywords[name] != default


def build_scheduler(factory: SchedulerFactory, optimizer: Optimizer, total_steps: float) -> dict:
    """Lightning's scheduler configuration for ``factory(optimizer)``: a schedule that takes
    ``total_steps`` gets the run's optimizer steps when not given one, and is stepped per step."""
    per_step = takes_total_steps(factory)
    _, keywords = factory_target(factory)
    if per_step and keywords.get("total_steps") is None:
        if not 0 < total_steps < math.inf:
            raise ConfigError(
                "model.lr_scheduler: the schedule needs the run's length: set trainer.max_steps "
                "or trainer.max_epochs (or the scheduler's total_steps)"
            )
        scheduler = factory(optimizer, total_steps=int(total_steps))
    else:
        scheduler = factory(optimizer)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "step" if per_step else "epoch"}
    if isinstance(scheduler, ReduceLROnPlateau):
        config["monitor"] = "val/loss"
    return config


def apply_lr_mults(optimizer: Optimizer) -> None:
    """Sets every group's rate to what the schedule set times the group's ``lr_mult``, keeping the
    schedule's own value in ``scheduled_lr``."""
    for group in optimizer.param_groups:
        group["scheduled_lr"] = group["lr"]
        group["lr"] = group["lr"] * group.get("lr_mult", 1.0)


@contextmanager
def scheduled_lrs(optimizer: Optimizer) -> Iterator[None]:
    """Inside: every group at the schedule's own rate (what a chained or plateau scheduler reads);
    after: times its ``lr_mult`` again."""
    for group in optimizer.param_groups:
        if "scheduled_lr" in group:
            group["lr"] = group["scheduled_lr"]
    try:
        yield
    finally:
        apply_lr_mults(optimizer)


def resolve(value: float | None, factory: OptimizerFactory, name: str) -> float | None:
    """The module's ``lr`` or ``weight_decay``: its own when set (saying so when the optimizer was
    given another), else ``None`` (the optimizer's own applies)."""
    if value is None:
        return None
    theirs, on_purpose = given_default(factory, name)
    if on_purpose and theirs != value:
        rank_zero_warn(
            f"model.{name} {value} replaces model.optimizer.init_args.{name} {theirs} "
            f"(set it in one place)"
        )
    return value
