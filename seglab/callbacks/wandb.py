"""The best model as a W&B artifact: at the end of ``fit``, the best checkpoint as a ``model``
artifact whose metadata are the best epoch's validation metrics. A no-op without a ``WandbLogger``;
logs from rank zero only."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from seglab.callbacks.summary import BestMetricsTable


class BestModelArtifact(L.Callback):
    """Logs ``ModelCheckpoint.best_model_path`` as a W&B artifact of type ``model`` when ``fit``
    ends, with the best epoch's validation metrics as metadata. The file is copied into the W&B
    run's own folder (``<run dir>/files/model.ckpt``) and the artifact refers to that copy, so an
    offline run holds everything ``wandb sync`` uploads, and a later run that overwrites the
    checkpoint folder cannot change what this run logged.

    Args:
        name: artifact name; default ``model-<run id>``.
        aliases: artifact aliases.
    """

    def __init__(self, name: str | None = None, aliases: list[str] | None = None) -> None:
        self.name = name
        self.aliases = ["best", "latest"] if aliases is None else list(aliases)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        checkpoint = trainer.checkpoint_callback
        path = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
        if not trainer.is_global_zero or not loggers or not path or not Path(path).is_file():
            return
        import wandb

        metadata: dict[str, object] = {"checkpoint": Path(path).name}
        if checkpoint.monitor and checkpoint.best_model_score is not None:
            metadata[checkpoint.monitor] = float(checkpoint.best_model_score)
        table = next((c for c in trainer.callbacks if isinstance(c, BestMetricsTable)), None)
        if table is not None and table.best:
            metadata.update(table.best, epoch=table.best_epoch)
        run = loggers[0].experiment
        copy = Path(run.dir) / "model.ckpt"
        shutil.copyfile(path, copy)
        artifact = wandb.Artifact(self.name or f"model-{run.id}", type="model", metadata=metadata)
        artifact.add_file(str(copy), name="model.ckpt", policy="immutable")  # no staging copy
        run.log_artifact(artifact, aliases=self.aliases)
