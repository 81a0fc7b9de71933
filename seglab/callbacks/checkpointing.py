"""Checkpoints that survive crashes, and runs that resume where they stopped.

- ``AtomicCheckpointIO`` writes every checkpoint (``last.ckpt`` too) to a temporary file in the same
  directory, flushes it to disk and renames it over the target: a process killed at any moment
  leaves either the old or the new checkpoint, never a truncated one. (Lightning's own writer
  buffers in memory, then writes the target file in place.)
- ``ResumeState`` stores the random number generators in every checkpoint, so a resumed run draws
  the same shuffles and augmentations as an uninterrupted one, and on SIGTERM/SIGINT (pre-emption,
  ``scancel``, ``timeout``, Ctrl+C; SLURM's SIGUSR1 with Lightning's auto-requeue) stops at the
  end of the batch, saves ``last.ckpt`` and prints the command that resumes the run.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seglab.compat import set_received_sigterm


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
    """RNG states in checkpoints, and a clean stop when the job is asked to stop.

    SIGTERM and SIGINT (and, with Lightning's ``SLURMEnvironment(auto_requeue=True)``, its requeue
    signal, SIGUSR1 by default) stop the run at the end of the current batch: ``fit`` saves
    ``last.ckpt`` at the step reached and prints the command that resumes it (after a SLURM
    signal, the job is requeued with ``scontrol requeue`` first); ``validate``/``test``/``predict``
    stop and say so. A second Ctrl+C stops at once.

    The signal handlers only take note, for a job runner signals every process at once: under DDP
    the ranks agree at the end of each training batch (one all-reduce of a flag) to stop after the
    same step, so the save in which every rank takes part cannot meet a rank still training (for
    evaluation and prediction each rank stops at its next batch). Lightning's own SIGTERM handler,
    which exchanges tensors between ranks inside the handler and lets the launcher kill the other
    ranks, is replaced while the loops run. Data-loader workers must ignore the signals (seglab's
    loaders do: ``seglab.data.ignore_stop_signals``), or their death ends the run with an error.

    Args:
        resume_command: the command that resumes the run, printed after the save (the ``seglab``
            command gives its own line with ``--ckpt_path last``).
    """

    def __init__(self, resume_command: str | None = None) -> None:
        self.resume_command = resume_command
        self.stop_signal: str | None = None  # the name of the signal that stopped the run
        self.saved: tuple[str, int] | None = None  # (last.ckpt, step) written on the stop
        self.requeued: str | None = None  # the SLURM job id requeued
        self._trainer: L.Trainer | None = None
        self._previous: dict[int, Any] = {}
        self._requeue_signal: int | None = None

    # --- RNG state ---------------------------------------------------------------------------
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

    # --- signals -----------------------------------------------------------------------------
    def _install(self, trainer: L.Trainer) -> None:
        """Called when a loop starts (Lightning has registered its handlers by then)."""
        if self._trainer is not None or threading.current_thread() is not threading.main_thread():
            return
        self._trainer = trainer
        self.stop_signal = None
        signals = [signal.SIGTERM, signal.SIGINT]
        environment = getattr(trainer.strategy, "cluster_environment", None)
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            self._requeue_signal = int(environment.requeue_signal or signal.SIGUSR1)
            signals.append(self._requeue_signal)
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, handler)
        self._previous, self._trainer = {}, None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None:
            if signum == signal.SIGINT:  # Ctrl+C a second time: stop now
                raise KeyboardInterrupt
            return
        self.stop_signal = signal.Signals(signum).name
        trainer = self._trainer
        if trainer is None:
            return
        if trainer.world_size == 1 or trainer.state.fn != "fit":
            request_stop(trainer)  # Lightning stops at the end of the batch
        if trainer.is_global_zero:
            print(
                f"{self.stop_signal}: stopping at the end of this batch (Ctrl+C again: at once)",
                file=sys.stderr,
                flush=True,
            )

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Every rank learns whether any rank was signalled; all stop after this same step.
            flag = torch.tensor([0 if self.stop_signal is None else 1], device=pl_module.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item():
                self.stop_signal = self.stop_signal or "SIGTERM"
                request_stop(trainer)

    def on_predict_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.stop_signal is not None:  # Lightning's prediction loop has no stop of its own
            raise SIGTERMException

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
        # Lightning turns the stop into SIGTERMException at the next batch boundary, in training or
        # validation alike; every rank gets it at the same step and takes part in the save.
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        self.stop_signal = self.stop_signal or "SIGTERM"
        checkpoint = trainer.checkpoint_callback
        directory = checkpoint.dirpath if isinstance(checkpoint, ModelCheckpoint) else None
        directory = directory or os.path.join(trainer.default_root_dir, "checkpoints")
        path = os.path.join(directory, "last.ckpt")
        trainer.save_checkpoint(path)
        self.saved = (path, trainer.global_step)
        if (
            self._requeue_signal is not None
            and self.stop_signal == signal.Signals(self._requeue_signal).name
        ):
            self.requeued = requeue_slurm_job() if trainer.is_global_zero else None
        for logger in trainer.loggers:  # their closing lines come before the resume command
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                finish_wandb_run(logger, preempted=True)
        resume = self.resume_command or f"the same command with --ckpt_path {path}"
        if self.requeued:
            resume = f"SLURM job {self.requeued} requeued; it resumes with: {resume}"
        if trainer.is_global_zero:
            print(
                f"{self.stop_signal}: saved {path} at step {trainer.global_step}; "
                f"resume with: {resume}",
                file=sys.stderr,
                flush=True,
            )


def request_stop(trainer: L.Trainer) -> None:
    """Asks Lightning's loops to stop at the end of the current batch, as its SIGTERM handler does
    (the flag they read, ``trainer.received_sigterm``, has no public setter)."""
    set_received_sigterm(trainer)


def requeue_slurm_job() -> str | None:
    """``scontrol requeue`` of this SLURM job (an array task as ``<array job>_<task>``), as
    Lightning's SLURM handler does; returns the job id, None when it failed (with a message)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        job_id = f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    else:
        job_id = os.environ.get("SLURM_JOB_ID", "")
    if not re.fullmatch(r"[0-9_]+", job_id):
        print(f"SLURM: no job id to requeue ({job_id!r})", file=sys.stderr, flush=True)
        return None
    try:
        status = subprocess.call(["scontrol", "requeue", job_id])
    except FileNotFoundError:
        status = -1
    if status != 0:
        print(f"SLURM: `scontrol requeue {job_id}` failed ({status})", file=sys.stderr, flush=True)
        return None
    return job_id


def finish_wandb_run(logger: WandbLogger, preempted: bool = False) -> None:
    """Ends the logger's W&B run now (its upload and its closing lines) instead of at exit; a
    pre-empted online run is marked resumable (``mark_preempting``)."""
    run = logger.experiment
    if preempted and not getattr(run, "offline", True):
        with contextlib.suppress(Exception):
            run.mark_preempting()
    run.finish()
