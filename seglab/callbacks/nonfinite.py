"""What a run does when its training loss turns NaN or infinite, for any LightningModule.

- ``stop`` (seglab's default): the run stops naming the step and the batch's files, before any
  validation or checkpoint of the diverged model, so the last checkpoint on disk is a good one. The
  check does not wait for the device: each step's flag is copied to pinned host memory behind the
  step and read once it has landed (at the latest before validation, a checkpoint or the end), so
  the run may go on for a few steps after the bad one.
- ``skip``: a step whose gradients are not finite makes no update (the gradients are dropped before
  the optimizer step, which then leaves every parameter and optimizer state as it was, and the
  norm layers' running statistics, which the forward pass of a NaN batch would have spoilt, are
  restored) and is counted in ``train/skipped_batches``. The decision reads the gradients after
  they were summed over all processes, so under DDP every rank skips the same step. It costs one
  host sync a step and a copy of the running statistics.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from seglab.data.batch import unpack_batch
from seglab.errors import ConfigError, NonFiniteLossError

SKIP_OPTION = "--trainer.callbacks+=seglab.callbacks.NonFiniteLoss --trainer.callbacks.policy=skip"


def running_statistics(module: nn.Module) -> list[Tensor]:
    """The buffers a forward pass in training mode updates: norm layers' running mean, variance
    and batch count."""
    return [
        buffer
        for layer in module.modules()
        if getattr(layer, "running_mean", None) is not None
        for buffer in layer.buffers(recurse=False)
    ]


class NonFiniteLoss(L.Callback):
    """Stops the run on a non-finite training loss, or skips such steps.

    Args:
        policy: ``stop`` or ``skip`` (see the module's documentation).
    """

    def __init__(self, policy: Literal["stop", "skip"] = "stop") -> None:
        if policy not in ("stop", "skip"):
            raise ConfigError(f"NonFiniteLoss.policy must be stop or skip, got {policy!r}")
        self.policy = policy
        self.skipped = 0
        self._pending: deque[tuple[Tensor, Any, Tensor, int, int, list[str] | None]] = deque()
        self._names: list[str] | None = None
        self._statistics: list[tuple[Tensor, Tensor]] = []  # (running buffer, its value before)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._names = unpack_batch(batch)[2]
        if self.policy == "stop":
            self._check(wait=False)
        else:
            self._statistics = [
                (buffer, buffer.detach().clone()) for buffer in running_statistics(pl_module)
            ]

    # --- stop ----------------------------------------------------------------------------------
    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if self.policy != "stop" or not isinstance(loss, Tensor):
            return
        loss = loss.detach()
        flag, event = torch.isfinite(loss), None
        if flag.device.type == "cuda":  # queued behind the step; the event says when it landed
            host = torch.empty((), dtype=torch.bool, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            flag, event = host, torch.cuda.Event()
            event.record()
        step = trainer.global_step - 1  # the optimizer step this batch made
        self._pending.append((flag, event, loss, step, trainer.current_epoch, self._names))

    def _check(self, wait: bool) -> None:
        """Raises on the first recorded non-finite loss that has reached the host (with ``wait``:
        waits for every recorded loss)."""
        while self._pending:
            flag, event, loss, step, epoch, names = self._pending[0]
            if event is not None and not wait and not event.query():
                return
            if event is not None:
                event.synchronize()
            self._pending.popleft()
            if not flag:
                self._pending.clear()
                files = f"; batch files: {', '.join(names)}" if names else ""
                raise NonFiniteLossError(
                    f"non-finite training loss ({loss.item()}) at step {step} (epoch {epoch})"
                    f"{files}. The last checkpoint is kept; to skip such steps instead, add "
                    f"{SKIP_OPTION}"
                )

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(wait=True)  # no validation of a diverged model

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(wait=True)  # raised before the file is written: the last good one stays

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(wait=True)

    # --- skip ----------------------------------------------------------------------------------
    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.policy != "skip":
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        grads = [g for g in grads if g is not None]
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # optimizers leave parameters without a gradient untouched
        for buffer, before in self._statistics:
            buffer.copy_(before)
        self.skipped += 1
        pl_module.log("train/skipped_batches", float(self.skipped))
        files = f"; batch files: {', '.join(self._names)}" if self._names else ""
        rank_zero_warn(
            f"skipped a step with non-finite gradients at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}){files}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)
