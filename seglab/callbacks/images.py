"""Prediction overlays of a fixed set of validation images every few epochs, for any logger.

Also the pieces every image-logging callback needs (``ExplainImages`` uses them too): the same
validation images every time, de-normalisation back to ``uint8``, colour overlays, and the fan-out
to whatever loggers the run has (W&B-like ``log_image``, TensorBoard ``add_image``, else PNG files).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from PIL import Image
from torch import Tensor

from seglab.compat import metrics_step
from seglab.data.batch import unpack_batch
from seglab.data.io import display_rgb
from seglab.data.normalize import denormalize
from seglab.data.palette import default_palette
from seglab.errors import ConfigError
from seglab.inference import predict_logits


def fixed_validation_samples(
    trainer: L.Trainer, num_images: int
) -> tuple[list[Tensor], list[Tensor] | None]:
    """The first ``num_images`` images (and masks, when the loader has them) of the validation
    loader: the validation loader does not shuffle, so they are the same images every epoch. Lists,
    one ``(C, H, W)`` tensor per image: images of many datasets differ in size."""
    loaders = trainer.val_dataloaders
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    images, masks = [], []
    for batch in loader:
        image, mask, _ = unpack_batch(batch)
        images.extend(image)
        if mask is not None:
            masks.extend(mask)
        if len(images) >= num_images:
            break
    images = [image.clone() for image in images[:num_images]]
    if len(masks) < len(images):
        return images, None
    return images, [mask.clone() for mask in masks[: len(images)]]


def to_uint8(image: Tensor, datamodule: object) -> np.ndarray:
    """A normalised ``(C, H, W)`` image back to ``uint8`` ``(H, W, 3)``, with the data module's
    ``mean``/``std`` when it has them (other than 3 bands: ``display_rgb`` of the values), else by
    min-max scaling."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is not None and std is not None and len(mean) == image.shape[0]:
        if image.shape[0] == 3:
            return denormalize(image, mean, std).permute(1, 2, 0).numpy()
        # other band counts: the first bands' values (seglab.data.normalize's rule, inverted)
        shape = (-1, 1, 1)
        raw = (image * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)) * 255
        return display_rgb(raw)
    image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def class_palette(datamodule: object, pl_module: object, num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours: the data module's palette (a dataset's own colours),
    else the one the model recorded, else VOC's colour map."""
    recorded = getattr(getattr(pl_module, "hparams", None), "palette", None)
    palette = getattr(datamodule, "palette", None) or recorded
    if palette is None or len(palette) < num_classes:
        return default_palette(num_classes)
    return np.asarray(palette, np.uint8)[:num_classes]


def color_overlay(
    image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Class colours blended over a ``uint8`` ``(H, W, 3)`` image; ids outside the palette (the
    ignore index) leave the image as it is."""
    valid = mask < len(palette)
    colors = palette[np.where(valid, mask, 0)].astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colors
    return np.where(valid[..., None], blended, image).round().astype(np.uint8)


def log_images(
    trainer: L.Trainer,
    key: str,
    panels: list[np.ndarray],
    loggers: list[Logger] | None = None,
) -> None:
    """Sends ``uint8`` ``(H, W, 3)`` panels to ``loggers`` (default: the trainer's): through
    ``log_image`` (W&B), ``experiment.add_image`` (TensorBoard), or as PNG files
    ``<log_dir>/<first part of key>/<rest of key>_step<step>_<i>.png`` (CSV, or no logger at
    all)."""
    step = metrics_step(trainer)  # the step of the validation metrics these belong to
    loggers = trainer.loggers if loggers is None else loggers
    for logger in loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=list(panels), step=step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            for i, panel in enumerate(panels):
                logger.experiment.add_image(f"{key}/{i}", panel, step, dataformats="HWC")
        else:
            _write_pngs(Path(logger.log_dir or trainer.default_root_dir), key, step, panels)
    if not trainer.loggers:
        _write_pngs(Path(trainer.default_root_dir), key, step, panels)


def _write_pngs(root: Path, key: str, step: int, panels: list[np.ndarray]) -> None:
    folder, _, tag = key.partition("/")
    (root / folder).mkdir(parents=True, exist_ok=True)
    tag = tag.replace("/", "_") or folder
    for i, panel in enumerate(panels):
        Image.fromarray(panel).save(root / folder / f"{tag}_step{step:06d}_{i}.png")


class PredictionImages(L.Callback):
    """The model's predictions on the first ``num_images`` validation images, every
    ``every_n_epochs`` validation epochs, logged under ``predictions/val``.

    W&B gets each image with its ``ground_truth`` and ``predictions`` masks and the class names (the
    masks can be toggled in the UI); other loggers get panels *image | ground truth | prediction*
    with the classes coloured, through TensorBoard's ``add_image`` or as PNG files in
    ``<log_dir>/predictions/``. Prediction uses the module's own inference settings (sliding window,
    TTA) and logging happens on rank zero only.

    Args:
        num_images: how many validation images (always the same ones).
        every_n_epochs: log after every this many validation epochs.
        alpha: weight of the class colours in the panels.
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1, alpha: float = 0.5) -> None:
        if num_images < 1 or every_n_epochs < 1:
            raise ConfigError("PredictionImages: num_images and every_n_epochs must be at least 1")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"PredictionImages.alpha must be in [0, 1], got {alpha}")
        self.num_images, self.every_n_epochs, self.alpha = num_images, every_n_epochs, alpha
        self.images: list[Tensor] | None = None
        self.masks: list[Tensor] | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if not trainer.is_global_zero:
            return
        if self.images is None:
            self.images, self.masks = fixed_validation_samples(trainer, self.num_images)
        settings = getattr(pl_module, "inference", None)
        preds = []
        with torch.no_grad():
            for image in self.images:  # one at a time: sizes may differ
                logits = predict_logits(pl_module, image[None].to(pl_module.device), settings)
                preds.append(logits[0].argmax(0).cpu().numpy().astype(np.uint8))
        truths = None if self.masks is None else [m.numpy().astype(np.uint8) for m in self.masks]
        images = [to_uint8(image, trainer.datamodule) for image in self.images]
        names = list(getattr(pl_module, "class_names", None) or range(logits.shape[1]))
        self._log(trainer, pl_module, images, truths, preds, [str(n) for n in names])

    def _log(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        images: list[np.ndarray],
        truths: list[np.ndarray] | None,
        preds: list[np.ndarray],
        names: list[str],
    ) -> None:
        key = "predictions/val"
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for logger in wandb_loggers:
            labels = dict(enumerate(names))
            ignore = getattr(getattr(pl_module, "hparams", {}), "ignore_index", None)
            if ignore is not None and ignore not in labels:
                labels[ignore] = "ignore"
            masks = []
            for i, pred in enumerate(preds):
                layers = {"predictions": {"mask_data": pred, "class_labels": labels}}
                if truths is not None:
                    layers["ground_truth"] = {"mask_data": truths[i], "class_labels": labels}
                masks.append(layers)
            logger.log_image(key=key, images=images, step=metrics_step(trainer), masks=masks)
        others = [lg for lg in trainer.loggers if not isinstance(lg, WandbLogger)]
        if others or not trainer.loggers:
            palette = class_palette(trainer.datamodule, pl_module, len(names))
            panels = []
            for i, image in enumerate(images):
                row = [image]
                if truths is not None:
                    row.append(color_overlay(image, truths[i], palette, self.alpha))
                row.append(color_overlay(image, preds[i], palette, self.alpha))
                panels.append(np.concatenate(row, axis=1))
            log_images(trainer, key, panels, loggers=others)
