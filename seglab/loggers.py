"""W&B without surprises: offline when no API key is configured, and the whole resolved config logged.

``wandb.init`` with no API key prompts for one on a terminal and raises without one (a batch job), so a
run that forgot ``wandb login`` would hang or die after the data was loaded. seglab checks for a key
the way wandb does (``WANDB_API_KEY``, an identity token file, ``~/.netrc`` for the configured base
URL, the settings' ``api_key``) before the logger starts and, finding none, switches W&B to offline
mode with a one-line notice saying where the runs are and how to upload them later.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


def wandb_credentials_configured() -> bool:
    """Whether ``wandb.init`` would find credentials without asking (an unreadable ``.netrc`` or a
    malformed key counts as none: offline is the safe answer)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth
        from wandb.sdk.wandb_settings import Settings

        # Fresh settings, read the way wandb.setup reads them (settings file, then environment):
        # loading wandb's global settings here would freeze them before WANDB_MODE is set.
        settings = Settings()
        config_dir = Path(os.environ.get("WANDB_CONFIG_DIR", "~/.config/wandb")).expanduser()
        settings.settings_system = str(config_dir / "settings")
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        return bool(read_netrc_auth(host=settings.base_url) or settings.api_key)
    except Exception:
        return False


def _class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None  # the parser has validated it already; an odd path is simply not W&B


def wandb_logger_configs(logger: Any) -> list[Mapping[str, Any]]:
    """The ``init_args`` of every ``WandbLogger`` (or subclass) in a parsed ``trainer.logger`` value
    (``None``/bool, one ``class_path``/``init_args`` namespace, or a list of them)."""
    items = logger if isinstance(logger, (list, tuple)) else [logger]
    found = []
    for item in items:
        if isinstance(item, WandbLogger):
            found.append({"save_dir": item.save_dir})
            continue
        class_path = getattr(item, "class_path", None) or (
            item.get("class_path") if isinstance(item, Mapping) else None
        )
        cls = _class(class_path) if isinstance(class_path, str) else None
        if cls is not None and issubclass(cls, WandbLogger):
            init_args = getattr(item, "init_args", None) or (
                item.get("init_args") if isinstance(item, Mapping) else None
            )
            init_args = init_args or {}
            found.append(dict(vars(init_args)) if hasattr(init_args, "__dict__") else init_args)
    return found


def offline_without_credentials(logger: Any) -> Path | None:
    """Switches W&B to offline mode (``WANDB_MODE=offline``) when ``logger`` holds a ``WandbLogger``,
    no credentials are configured and neither ``WANDB_MODE`` nor ``offline: true`` decided already.
    Returns the directory the offline runs go to, or None when nothing was changed."""
    configs = wandb_logger_configs(logger)
    if not configs or "WANDB_MODE" in os.environ or wandb_credentials_configured():
        return None
    if all(c.get("offline") for c in configs):
        return None
    os.environ["WANDB_MODE"] = "offline"
    from wandb.sdk import wandb_setup

    loaded = wandb_setup.singleton().settings_if_loaded  # already read in this process (notebooks)
    if loaded is not None:
        loaded.update_from_env_vars({"WANDB_MODE": "offline"})
    first = configs[0]
    root = first.get("save_dir") or first.get("dir") or os.environ.get("WANDB_DIR") or "."
    directory = Path(root) / "wandb"
    _notice(
        f"W&B: no API key configured (WANDB_API_KEY or `wandb login`), so runs are stored offline "
        f"under {directory}; upload them later with `wandb sync {directory}/offline-run-*`"
    )
    return directory


@rank_zero_only
def _notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SaveAndLogConfig(SaveConfigCallback):
    """Writes ``config.yaml`` as Lightning does and logs the same resolved config (trainer, model,
    data, callbacks: everything, not only the model's hyper-parameters) to every logger, so a W&B
    run can be reproduced from its config panel."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        config.pop("config", None)  # the paths of the YAML files, not settings
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
