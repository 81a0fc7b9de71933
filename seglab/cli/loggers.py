"""W&B without surprises: offline when no API key is configured, and the whole resolved config
logged.

``wandb.init`` with no API key prompts for one on a terminal and raises without one (a batch job),
so a run that forgot ``wandb login`` would hang or die after the data was loaded. Before the loggers
are built, seglab checks for a key the way wandb does and, finding none, switches W&B to offline
mode with a one-line notice saying where the runs are and how to upload them.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from seglab.cli.config import class_from_path, entries_of
from seglab.cli.messages import notice
from seglab.compat import (
    wandb_credentials_configured,
    wandb_logged_metrics,
    wandb_settings_offline,
)


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

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """A resumed fit compares its settings with the first part's ``config.yaml`` before that
        file is overwritten: nothing changed, no second config is logged; something changed, the
        keys are named (a resumed run with another ``lr`` is another experiment)."""
        self.changed: list[str] | None = None  # None: not a resumed fit
        if stage == "fit" and self.config.get("ckpt_path") and self.save_to_log_dir:
            log_dir = trainer.log_dir  # all ranks: it broadcasts
            path = Path(log_dir or ".") / self.config_filename
            if trainer.is_global_zero and path.is_file():
                before = yaml.safe_load(path.read_text()) or {}
                after = yaml.safe_load(self.parser.dump(self.config, skip_none=False)) or {}
                self.changed = changed_settings(before, after)
                if self.changed:
                    notice(
                        "seglab: the resumed run's settings differ from its first part's "
                        f"({path}): {'; '.join(self.changed)}; the loggers' config takes the new "
                        "values (to compare settings, start a new run instead)"
                    )
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.logged = False

    def _log(self, trainer: L.Trainer) -> None:
        if getattr(self, "logged", True):
            return
        if getattr(self, "changed", None) == []:  # resumed, same settings: logged once already
            self.logged = True
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


# --- one run across resumes ----------------------------------------------------------------------
STEP_KEY = "trainer/global_step"  # Lightning's WandbLogger logs every metric against it
IDENTITY_FILE = "run.json"  # in the run directory: the logger identities of its first fit
# Settings a resumed fit takes from the checkpoint (the model's; the data's normalisation follows).
FILLED_ON_RESUME = ("model.", "data.init_args.mean", "data.init_args.std")
VERSIONED = (CSVLogger, TensorBoardLogger)


def generate_id() -> str:
    """A new W&B run id (W&B's own form: 8 lowercase letters and digits)."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def _kind(cls_or_logger: Any) -> str | None:
    cls = cls_or_logger if isinstance(cls_or_logger, type) else type(cls_or_logger)
    if issubclass(cls, WandbLogger):
        return "wandb"
    if issubclass(cls, TensorBoardLogger):
        return "tensorboard"
    if issubclass(cls, CSVLogger):
        return "csv"
    return None


def _logger_entries(logger: Any) -> list[tuple[str, Any, Namespace | None]]:
    """``(kind, entry, init_args)`` for the W&B, CSV and TensorBoard loggers of a parsed
    ``trainer.logger``, in order."""
    found = []
    for entry, init_args in entries_of(logger, (WandbLogger, CSVLogger, TensorBoardLogger)):
        cls = type(entry) if init_args is None else class_from_path(entry.class_path)
        kind = _kind(cls)
        if kind is not None:
            found.append((kind, entry, init_args))
    return found


def read_identity(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The logger identities the run directory's first fit recorded (empty: none recorded)."""
    path = Path(run_dir) / IDENTITY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def continue_identity(logger: Any, run_dir: Path, resuming: bool) -> list[str]:
    """Gives the parsed loggers their identity before they are built: a resumed fit continues the
    recorded W&B run (its id with ``resume="allow"``) and CSV/TensorBoard versions; a new fit gets
    a new W&B id (recorded by ``record_identity``). A setting the user gave wins. Returns what was
    continued, for the notice."""
    identity = read_identity(run_dir) if resuming else {}
    seen: dict[str, int] = {}
    continued = []
    for kind, _, init_args in _logger_entries(logger):
        if init_args is None:  # an instance given in Python: its identity is its own
            continue
        index = seen[kind] = seen.get(kind, -1) + 1
        recorded = identity.get(kind, [])
        recorded = recorded[index] if index < len(recorded) else {}
        if kind == "wandb":
            if init_args.get("id") is None:
                init_args["id"] = recorded.get("id") or generate_id()
            if resuming:
                init_args["resume"] = "allow"
                if recorded.get("id") == init_args["id"]:
                    continued.append(f"W&B run {init_args['id']}")
        elif resuming and init_args.get("version") is None and "version" in recorded:
            init_args["version"] = recorded["version"]
            continued.append(f"{kind} version {recorded['version']}")
    return continued


def record_identity(loggers: list[Logger], run_dir: Path) -> None:
    """Writes the loggers' identities (W&B run id and project, CSV/TensorBoard version and
    folder) to ``<run dir>/run.json``; called by the first fit of a run (rank zero)."""
    identity: dict[str, list[dict[str, Any]]] = {}
    for logger in loggers:
        kind = _kind(logger)
        if kind == "wandb":
            entry = {"id": logger.version, "project": logger.name}
        elif kind is not None:
            entry = {"version": logger.version, "log_dir": logger.log_dir}
        else:
            continue
        identity.setdefault(kind, []).append(entry)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / IDENTITY_FILE).write_text(json.dumps(identity, indent=1) + "\n")


def wandb_offline_runs(logger: WandbLogger) -> list[Path]:
    """The offline run folders of the logger's W&B run id under its save directory, oldest first
    (a resumed offline run writes a folder per part: ``offline-run-<time>-<id>[-N]``)."""
    root = Path(logger.save_dir or ".") / "wandb"
    run_id = logger.version
    folders = [
        p for p in root.glob(f"offline-run-*-{run_id}*") if (p / f"run-{run_id}.wandb").is_file()
    ]
    return sorted(folders, key=lambda p: p.stat().st_mtime_ns)


def skip_logged_steps(logger: WandbLogger, offline: bool) -> None:
    """A resumed W&B run logs no metric at a step the run has already: after a hard stop
    (SIGKILL) the first part logged steps past its last checkpoint, which the resumed part trains
    again; W&B keeps the first values. Offline, the earlier parts' files give each metric's last
    step exactly. Online, the run's summary gives the last ``trainer/global_step``: rows below it
    are skipped (after a SIGKILL, metrics of that very step can appear twice)."""
    log_metrics = logger.log_metrics
    state: dict[str, dict[str, int]] = {}

    def last_logged() -> dict[str, int]:
        if offline:
            last: dict[str, int] = {}
            for folder in wandb_offline_runs(logger):
                for key, step in wandb_logged_metrics(folder / f"run-{logger.version}.wandb"):
                    last[key] = max(step, last.get(key, step))
            return last
        value = logger.experiment.summary.get(STEP_KEY)
        return {} if value is None else {"*": int(value) - 1}

    def log_once(metrics: dict[str, Any], step: int | None = None) -> None:
        if "last" not in state:
            state["last"] = last_logged()
        last = state["last"]
        if step is not None and last:
            metrics = {k: v for k, v in metrics.items() if step > last.get(k, last.get("*", -1))}
            if not metrics:
                return
        log_metrics(metrics, step)

    logger.log_metrics = log_once  # type: ignore[method-assign]


def upload_command(logger: WandbLogger) -> str:
    """The command that uploads every part of an offline W&B run as one run."""
    root = Path(logger.save_dir or ".") / "wandb"
    return f"wandb sync {root}/offline-run-*-{logger.version}*"


def changed_settings(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """``key old -> new`` for every setting that differs between two configs (nested keys dotted;
    the checkpoint path and the config files are not settings)."""
    changed = []
    for key in sorted(set(before) | set(after), key=str):
        name = f"{prefix}{key}"
        if name in ("ckpt_path", "config"):
            continue
        if name.startswith("trainer.logger") and key in ("id", "version", "resume"):
            continue  # the run's identity, set by seglab
        old, new = before.get(key), after.get(key)
        if old is None and name.startswith(FILLED_ON_RESUME):
            continue  # unset in the first part, filled from its checkpoint now
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            old, new = dict(enumerate(old)), dict(enumerate(new))  # e.g. a list of loggers
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_settings(old, new, f"{name}.")
        elif old != new:
            changed.append(f"{name} {old!r} -> {new!r}")
    return changed
