"""Checkpoints that survive crashes, and runs that resume where they stopped.

- ``AtomicCheckpointIO`` writes every checkpoint (``last.ckpt`` too) to a temporary file in the same
  directory, flushes it to disk and renames it over the target: a process killed at any moment
  leaves either the old or the new checkpoint, never a truncated one. (Lightning's own writer
  buffers in memory, then writes the target file in place.)
- ``ResumeState`` stores the random number generators in every checkpoint, so a resumed run draws
  the same shuffles and augmentations as an uninterrupted one, and on SIGTERM (pre-emption,
  ``scancel``, SLURM's SIGUSR1 handled by Lightning's SLURM environment) saves ``last.ckpt`` before
  Lightning stops.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<dir>/.<name>.tmp-*``, fsync, then ``os.replace`` onto the target."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if not isinstance(get_filesystem(path), type(get_filesystem("."))):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote: no rename
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name must not contain "last": Lightning's `ckpt_path="last"` globs for it.
        fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        for stale in path.parent.glob(".partial-*.tmp"):  # left by a process killed mid-write
            if stale.name != os.path.basename(tmp):
                stale.unlink(missing_ok=True)


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(L.Callback):
    """RNG states in checkpoints, and a ``last.ckpt`` written when the run is asked to stop.

    Args:
        resume_command: the command that resumes the run, printed after the SIGTERM save (the
            ``seglab`` command gives its own line with ``--ckpt_path last``).
    """

    def __init__(self, resume_command: str | None = None) -> None:
        self.resume_command = resume_command

    def state_dict(self) -> dict[str, Any]:
        state = _rng_state()
        # Plain containers only, so checkpoints stay loadable with torch.load(weights_only=True).
        state["python"] = [state["python"][0], list(state["python"][1]), state["python"][2]]
        state["numpy"] = [state["numpy"][0], state["numpy"][1].tolist(), *state["numpy"][2:]]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        py = state["python"]
        state["python"] = (py[0], tuple(py[1]), py[2])
        state["numpy"] = (
            state["numpy"][0],
            np.array(state["numpy"][1], dtype=np.uint32),
            *state["numpy"][2:],
        )
        _set_rng_state(state)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Lightning turns SIGTERM into SIGTERMException at the next batch boundary, in training or
        # validation alike; every rank gets it, so every rank takes part in the save.
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        checkpoint = trainer.checkpoint_callback
        directory = checkpoint.dirpath if isinstance(checkpoint, ModelCheckpoint) else None
        directory = directory or os.path.join(trainer.default_root_dir, "checkpoints")
        path = os.path.join(directory, "last.ckpt")
        trainer.save_checkpoint(path)
        resume = self.resume_command or f"the same command with --ckpt_path {path}"
        rank_zero_info(
            f"SIGTERM: saved {path} at step {trainer.global_step}; resume with: {resume}"
        )
