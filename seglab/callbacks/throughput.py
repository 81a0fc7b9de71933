"""Training throughput and data-wait fraction in the logs, so a starved GPU shows up in every run.

Logged every ``window`` training batches (default: the trainer's ``log_every_n_steps``):

- ``perf/images_per_sec``: images per second of all processes together (this process's rate times
  the world size; DDP ranks step in lockstep);
- ``perf/images_per_sec_per_device``: the same for this process alone;
- ``perf/data_wait_fraction``: the share of the window's wall time the loop spent between the end of
  one batch (``on_train_batch_end``) and the start of the next (``on_train_batch_start``), i.e.
  waiting for the data loader (plus Lightning's batch transfer). Near 1: the data pipeline is the
  bottleneck; near 0: the model is.

Why not Lightning's ``ThroughputMonitor``: it calls ``torch.cuda.synchronize()`` after every batch,
needs a ``batch_size_fn`` and FLOP counts, and does not measure the time spent waiting for data.

Timestamps are taken on the host. With CUDA the host may run a few steps ahead of the device, so
the window's end waits for the device once (one ``synchronize`` per window, not per step): the
window then covers exactly the work done in it.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.data import extract_batch_size

from seglab.data.batch import unpack_batch
from seglab.errors import ConfigError


class Throughput(L.Callback):
    """Logs ``perf/images_per_sec`` (all processes), ``perf/images_per_sec_per_device`` and
    ``perf/data_wait_fraction`` during training.

    Args:
        window: training batches per measurement; ``None`` uses the trainer's
            ``log_every_n_steps``. A window cut short by validation or the end of an epoch is
            logged as it is, then a new one starts.
    """

    def __init__(self, window: int | None = None) -> None:
        if window is not None and window < 1:
            raise ConfigError(
                f"Throughput.window must be a positive number of batches, got {window}"
            )
        self.window = window
        self._reset()

    def _reset(self) -> None:
        self._start: float | None = None  # start of the current window
        self._last_end: float | None = None  # end of the previous batch
        self._wait = 0.0
        self._images = 0
        self._batches = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._start is None:
            self._start = now  # the first batch's wait includes worker start-up: not counted
        elif self._last_end is not None:
            self._wait += now - self._last_end

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._images += _batch_size(batch)
        self._batches += 1
        self._last_end = time.perf_counter()
        if self._batches >= (self.window or trainer.log_every_n_steps):
            self._flush(trainer, pl_module)
            self._start = self._last_end  # the next window starts here, its first wait included

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer, pl_module)  # validation time is not training time
        self._reset()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer, pl_module)
        self._reset()

    def _flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Logs the current window, if it holds any batch, and empties it."""
        if self._start is None or self._batches == 0:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # once per window: the device's work is in it
            self._last_end = time.perf_counter()
        elapsed = max(self._last_end - self._start, 1e-9)
        per_device = self._images / elapsed
        metrics = {
            "perf/images_per_sec": per_device * trainer.world_size,
            "perf/images_per_sec_per_device": per_device,
            "perf/data_wait_fraction": min(1.0, self._wait / elapsed),
        }
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        self._wait, self._images, self._batches = 0.0, 0, 0


def _batch_size(batch: Any) -> int:
    """Images in a batch: seglab's formats directly (``seglab.data.batch``); anything else as
    Lightning infers it."""
    try:
        image = unpack_batch(batch)[0]
    except (KeyError, IndexError, TypeError):
        return extract_batch_size(batch)
    return len(image) if isinstance(image, torch.Tensor) else extract_batch_size(batch)
