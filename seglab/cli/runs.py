"""Where a run writes, and how ``--ckpt_path`` finds and checks what it resumes from.

Every run of an experiment writes under one predictable directory, the *run directory*:
``trainer.default_root_dir`` when given, else ``outputs/<experiment>`` with ``<experiment>`` the
stem of the first ``--config`` file (``outputs/quickstart`` for ``experiments/quickstart.yaml``).
Its ``checkpoints/`` folder is the ``dirpath`` of every ``ModelCheckpoint`` that does not set its
own, whatever the logger, so ``--ckpt_path last`` finds the newest ``last.ckpt`` of the experiment's
previous run instead of looking in a new logger version folder.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint

from seglab.cli.config import entries_of
from seglab.errors import CheckpointError, ConfigError

OUTPUTS = Path("outputs")
DEFAULT_EXPERIMENT = "seglab"  # the experiment name of a run configured without --config
_LAST = re.compile(rf"^{ModelCheckpoint.CHECKPOINT_NAME_LAST}(-v?\d+)?$")


def experiment_name(config: Namespace) -> str:
    """The stem of the first ``--config`` file of a parsed configuration."""
    files = config.get("config") or []
    return Path(str(files[0])).stem if files else DEFAULT_EXPERIMENT


def run_directory(config: Namespace) -> Path:
    """``trainer.default_root_dir`` if set, else ``outputs/<experiment>``."""
    given = config.get("trainer", {}).get("default_root_dir")
    return Path(given) if given else OUTPUTS / experiment_name(config)


def checkpoint_directories(config: Namespace, run_dir: Path) -> list[Path]:
    """Gives every configured ``ModelCheckpoint`` without a ``dirpath`` the run's ``checkpoints/``
    folder (in ``config``, so ``config.yaml`` records it) and returns their directories; empty when
    the config has none (seglab then adds one, see ``default_checkpoint``)."""
    directories = []
    for entry, init_args in entries_of(config.get("trainer", {}).get("callbacks"), ModelCheckpoint):
        settings = entry if init_args is None else init_args  # an instance, or its init_args
        if getattr(settings, "dirpath", None) is None:
            settings.dirpath = str(run_dir / "checkpoints")
        directories.append(Path(settings.dirpath))
    return directories


def default_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """The checkpointing of a config that configures none: ``last.ckpt`` in the run directory."""
    return ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)


def find_last_checkpoint(directories: list[Path]) -> Path | None:
    """The newest ``last.ckpt`` (or ``last-v1.ckpt`` ...) in ``directories``."""
    found = [
        path
        for directory in directories
        if directory.is_dir()
        for path in directory.glob("*.ckpt")
        if _LAST.match(path.stem)
    ]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def read_checkpoint(path: str | Path, weights_only: bool | None = None) -> dict[str, Any]:
    """A checkpoint's contents (tensors memory-mapped, so this is cheap), or an error naming the
    file and what is wrong: missing, truncated or not a torch file, needing arbitrary unpickling
    (refused unless ``weights_only`` is False), or not a Lightning checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path: {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise CheckpointError(
            f"--ckpt_path: {path} is not a readable checkpoint (truncated, or not a file written "
            "by torch.save)"
        )
    try:
        data = torch.load(
            path, map_location="cpu", weights_only=weights_only is not False, mmap=True
        )
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"--ckpt_path: {path} holds objects that need arbitrary unpickling, refused "
            f"(loaded with weights_only=True). Only if you trust the file, pass --weights_only "
            f"false. torch said: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"--ckpt_path: {path} is not a readable checkpoint: {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(
            f"--ckpt_path: {path} is not a Lightning checkpoint (it has no state_dict)"
        )
    return data
