"""W&B without surprises: offline when no API key is configured, and the whole resolved config
logged.

``wandb.init`` with no API key prompts for one on a terminal and raises without one (a batch job),
so a run that forgot ``wandb login`` would hang or die after the data was loaded. Before the loggers
are built, seglab checks for a key the way wandb does and, finding none, switches W&B to offline
mode with a one-line notice saying where the runs are and how to upload them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from seglab.cli.config import entries_of
from seglab.cli.messages import notice
from seglab.compat import wandb_credentials_configured, wandb_settings_offline


def offline_without_credentials(logger: Any) -> Path | None:
    """Switches W&B to offline mode (``WANDB_MODE=offline``) when ``logger`` (a parsed
    ``trainer.logger`` value) holds a ``WandbLogger``, no credentials are configured and neither
    ``WANDB_MODE`` nor ``offline: true`` decided already. Returns the directory the offline runs go
    to, or None when nothing was changed."""
    configs = [
        init_args if init_args is not None else {"save_dir": entry.save_dir}
        for entry, init_args in entries_of(logger, WandbLogger)
    ]
    if not configs or "WANDB_MODE" in os.environ or wandb_credentials_configured():
        return None
    if all(c.get("offline") for c in configs):
        return None
    os.environ["WANDB_MODE"] = "offline"
    wandb_settings_offline()
    first = configs[0]
    root = first.get("save_dir") or first.get("dir") or os.environ.get("WANDB_DIR") or "."
    directory = Path(root) / "wandb"
    notice(
        f"W&B: no API key configured (WANDB_API_KEY or `wandb login`), so runs are stored offline "
        f"under {directory}; upload them later with `wandb sync {directory}/offline-run-*`"
    )
    return directory


class SaveAndLogConfig(SaveConfigCallback):
    """Writes ``config.yaml`` as Lightning does and logs the same resolved config (trainer, model,
    data, callbacks: everything, not only the model's hyper-parameters) to every logger, so a W&B
    run can be reproduced from its config panel. Logged when the loop starts (after Lightning's own
    hyper-parameter logging, which runs after ``on_fit_start``), so the command's ``data`` section
    is the one that stays."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.logged = False

    def _log(self, trainer: L.Trainer) -> None:
        if getattr(self, "logged", True):
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        config.pop("config", None)  # the paths of the YAML files, not settings
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
        self.logged = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer)
