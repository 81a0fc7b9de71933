"""A run that ends between two validations still ends with one.

A recipe validates every ``val_check_interval`` steps; shortened for a quick try (``max_steps``
cut from 10,000 to 800 with validation every 500 steps), it would validate once, half-way, and the
checkpoints and the printed result would not be those of the trained model. ``ValidateAtEnd`` asks
Lightning to stop after the last step (``trainer.should_stop``), which makes it validate there
first; when that step is a validation step anyway, it validates once, as usual. Lightning skips that
in an epoch that ``check_val_every_n_epoch`` leaves out, so the last epoch is let in (and the
trainer's setting restored when fitting ends).
"""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateAtEnd(L.Callback):
    """Validates after the last training step of a step-bounded run (``max_steps``) or of the last
    epoch (``max_epochs``), whatever ``val_check_interval`` and ``check_val_every_n_epoch`` say."""

    def __init__(self) -> None:
        self._every_n_epochs: int | None = None

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        last_step = 0 < trainer.max_steps <= trainer.global_step
        last_epoch = (
            trainer.max_epochs is not None
            and trainer.current_epoch == trainer.max_epochs - 1
            and batch_idx == trainer.num_training_batches - 1
        )
        if (last_step or last_epoch) and trainer.enable_validation:
            trainer.should_stop = True
            if trainer.check_val_every_n_epoch not in (None, 1):
                self._every_n_epochs = trainer.check_val_every_n_epoch
                trainer.check_val_every_n_epoch = 1

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._every_n_epochs is not None:
            trainer.check_val_every_n_epoch, self._every_n_epochs = self._every_n_epochs, None
