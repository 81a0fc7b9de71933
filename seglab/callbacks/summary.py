"""Prints the best validation metrics when ``fit`` ends: a run's result, readable at a glance."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from seglab.errors import ConfigError


class BestMetricsTable(L.Callback):
    """Keeps the validation metrics of the epoch where ``monitor`` was best and prints them at the
    end of ``fit``.

    Args:
        monitor: metric that decides the best epoch.
        mode: ``max`` or ``min``.
        prefix: metrics whose names start with it are shown.
    """

    def __init__(self, monitor: str = "val/mIoU", mode: str = "max", prefix: str = "val/") -> None:
        if mode not in ("max", "min"):
            raise ConfigError(f"best_metrics.mode must be max or min, got {mode!r}")
        self.monitor, self.mode, self.prefix = monitor, mode, prefix
        self.best: dict[str, float] = {}
        self.best_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if math.isnan(value):
            return
        best = self.best.get(self.monitor)
        if best is None or (value > best if self.mode == "max" else value < best):
            self.best = {
                k: float(v)
                for k, v in trainer.callback_metrics.items()
                if k.startswith(self.prefix)
            }
            self.best_epoch = trainer.current_epoch

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.best:
            print(format_table(self.best, f"Best validation metrics (epoch {self.best_epoch})"))


def format_table(metrics: dict[str, float], title: str) -> str:
    width = max(len(k) for k in metrics)
    rule = "-" * (width + 12)
    rows = [f"{k:<{width}}  {v:>9.4f}" for k, v in sorted(metrics.items())]
    return "\n".join([rule, title, rule, *rows, rule])
