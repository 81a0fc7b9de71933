"""Class weights computed from the training masks, on the data side, when fit starts.

A loss whose class weights are a rule (``seglab.losses.CrossEntropyLoss(class_weights=
"median_frequency")``) needs the class pixel counts of the training split. ``SegmentationModule``
hands the work to this callback (``configure_callbacks``): one process counts the training set of
whatever data module the trainer has (``seglab.data.stats.training_set``: an attribute or a method
``train_dataset``; seglab's data modules count whole masks, from the decoded cache when there is
one), sends the counts to the others, and every waiting loss turns them into weights. The numbers
are kept in the loss's state, so checkpoints, resumed runs and evaluations use the very weights
computed; they are printed and logged as ``class_weight/<class name>``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from seglab.data.stats import class_pixel_counts, training_set
from seglab.errors import ConfigError, DataError, SeglabError
from seglab.losses import needing_class_counts


class ClassWeightsFromData(L.Callback):
    """Turns class-weight rules of ``pl_module.criterion`` into numbers, once, when fit (or an
    evaluation of a model that has none yet) starts: after a checkpoint's weights were restored."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_weights(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_weights(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_weights(trainer, pl_module)

    def fit_weights(self, trainer: L.Trainer, pl_module: Any) -> None:
        waiting = needing_class_counts(pl_module.criterion)
        if not waiting:
            return
        hp = pl_module.hparams
        rules = ", ".join(sorted({loss.weight_rule for loss in waiting}))
        if trainer.datamodule is None:
            raise ConfigError(
                f"class_weights: {rules} counts the training masks of a data module, and this "
                "trainer has none (it was given loaders): give the weights as numbers"
            )
        # One process counts; a mistake it finds stops every process (none waits for the counts).
        counts, problem = None, None
        if trainer.is_global_zero:
            try:
                dataset = training_set(trainer.datamodule)
                workers = getattr(trainer.datamodule, "num_workers", 0)
                counts = class_pixel_counts(dataset, hp.num_classes, hp.ignore_index, workers)
            except SeglabError as e:
                problem = (isinstance(e, DataError), f"class_weights: {rules}: {e}")
        counts, problem = trainer.strategy.broadcast((counts, problem), src=0)
        if problem is not None:
            data_problem, message = problem
            raise DataError(message) if data_problem else ConfigError(message)
        names = list(pl_module.class_names)
        for loss in waiting:
            weights = loss.fit_class_counts(counts)
            table = {f"class_weight/{n}": w for n, w in zip(names, weights, strict=True)}
            for logger in trainer.loggers:
                logger.log_hyperparams(table)
            shown = ", ".join(f"{n} {w:.3g}" for n, w in zip(names, weights, strict=True))
            rank_zero_info(f"seglab: class weights ({loss.weight_rule}): {shown}")
