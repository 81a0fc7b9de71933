"""A run that ends between two validations still ends with one.

A recipe validates every ``val_check_interval`` steps; shortened for a quick try (``max_steps``
cut from 10,000 to 800 with validation every 500 steps), it would validate once, half-way, and the
checkpoints and the printed result would not be those of the trained model. ``ValidateAtEnd`` asks
Lightning to stop after the last step (``trainer.should_stop``), which makes it validate there
first; when that step is a validation step anyway, it validates once, as usual.
"""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateAtEnd(L.Callback):
    """Validates after the last training step of a step-bounded run (``max_steps``) or of the last
    epoch (``max_epochs``, when validation runs every epoch)."""

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
