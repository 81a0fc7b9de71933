"""The per-class table and confusion matrix of every validation, for any logger.

After every validation epoch: the per-class table (IoU, Dice, accuracy) and the confusion matrix.
W&B gets a ``wandb.Table`` and its native confusion-matrix chart, built from the pixel counts
(``wandb.plot.confusion_matrix`` would want one entry per pixel); TensorBoard gets the table as
text; every logger with a directory (CSV, TensorBoard) gets both as CSV files. Logged from rank
zero, at the step of the validation's metrics; the confusion matrix is the one the module synced
over all ranks.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from seglab.compat import metrics_step
from seglab.metrics import scores_from_confusion


def class_rows(confusion: Tensor, class_names: list[str]) -> list[list[object]]:
    """``[class, IoU, Dice, accuracy]`` per class; None where a class has no score (absent from
    both prediction and target)."""
    scores = scores_from_confusion(confusion)
    columns = (scores["IoU"], scores["dice_per_class"], scores["acc_per_class"])
    rows = []
    for i, name in enumerate(class_names):
        values = [float(c[i]) for c in columns]
        rows.append([name, *(None if v != v else v for v in values)])  # NaN -> None
    return rows


class ClassMetricsReport(L.Callback):
    """Per-class table and confusion matrix of every validation epoch (``val/per_class``,
    ``val/confusion_matrix``); CSV files go to ``<log_dir>/per_class/``."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        confusion = getattr(pl_module, "last_confusion", {}).get("val")
        if trainer.sanity_checking or not trainer.is_global_zero or confusion is None:
            return
        names = [str(n) for n in getattr(pl_module, "class_names", range(len(confusion)))]
        rows = class_rows(confusion, names)
        step, epoch = metrics_step(trainer), trainer.current_epoch
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                _log_wandb(logger, rows, confusion, names, step)
                continue
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text("val/per_class", _markdown(rows), step)
            if logger.log_dir:
                _write_csv(Path(logger.log_dir) / "per_class", epoch, rows, confusion, names)
        if not trainer.loggers:
            folder = Path(trainer.default_root_dir) / "per_class"
            _write_csv(folder, epoch, rows, confusion, names)


def _log_wandb(
    logger: WandbLogger, rows: list[list[object]], confusion: Tensor, names: list[str], step: int
) -> None:
    import wandb

    table = wandb.Table(columns=["class", "IoU", "Dice", "accuracy"], data=rows)
    counts = confusion.tolist()
    cells = [
        [names[t], names[p], counts[t][p]] for t in range(len(names)) for p in range(len(names))
    ]
    chart = wandb.plot_table(
        vega_spec_name="wandb/confusion_matrix/v1",
        data_table=wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=cells),
        fields={"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        string_fields={"title": "Validation confusion matrix (pixels)"},
    )
    logger.experiment.log(
        {"val/per_class": table, "val/confusion_matrix": chart, "trainer/global_step": step}
    )


def _markdown(rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| class | IoU | Dice | accuracy |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _write_csv(
    folder: Path, epoch: int, rows: list[list[object]], confusion: Tensor, names: list[str]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"val_epoch{epoch:03d}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "IoU", "Dice", "accuracy"])
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    with open(folder / f"val_confusion_epoch{epoch:03d}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["actual \\ predicted", *names])
        writer.writerows(
            [name, *counts] for name, counts in zip(names, confusion.tolist(), strict=True)
        )
