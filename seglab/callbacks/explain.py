"""Logs Grad-CAM heat maps of a fixed set of validation images every few epochs, so one can watch
where the model looks as it trains."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from seglab.explain.cam import grad_cam, overlay, resolve_layer


class ExplainImages(L.Callback):
    """Grad-CAM overlays for the first ``num_images`` validation images and one class.

    Loggers with ``log_image`` (W&B) get images through it, TensorBoard through
    ``experiment.add_image``; any other logger (CSV) gets PNG files in ``<log_dir>/explain/``.

    Args:
        class_name: the class to explain (a name from the data module's class names).
        layer: module path inside the network (default: the encoder's last stage).
        num_images: how many validation images (always the same ones).
        every_n_epochs: log after every this many validation epochs.
    """

    def __init__(
        self,
        class_name: str,
        layer: str | None = None,
        num_images: int = 4,
        every_n_epochs: int = 1,
    ) -> None:
        if num_images < 1 or every_n_epochs < 1:
            raise ValueError("ExplainImages: num_images and every_n_epochs must be at least 1")
        self.class_name, self.layer = class_name, layer
        self.num_images, self.every_n_epochs = num_images, every_n_epochs
        self.images: torch.Tensor | None = None

    def _fixed_images(self, trainer: L.Trainer) -> torch.Tensor:
        if self.images is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            images = []
            for batch in loader:
                image = batch["image"] if isinstance(batch, dict) else batch[0]
                images.extend(image)
                if len(images) >= self.num_images:
                    break
            self.images = torch.stack(images[: self.num_images]).clone()
        return self.images

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        names = list(pl_module.class_names)
        if self.class_name not in names:
            raise ValueError(
                f"ExplainImages.class_name: {self.class_name!r} is not one of {', '.join(names)}"
            )
        target = names.index(self.class_name)
        was_training = pl_module.training
        pl_module.eval()
        # Validation runs under inference mode; Grad-CAM needs autograd.
        with torch.inference_mode(False):
            images = self._fixed_images(trainer).clone().to(pl_module.device)
            layer = resolve_layer(pl_module.model, self.layer)
            cams = grad_cam(pl_module.model, images, target, layer, forward=pl_module)
        pl_module.train(was_training)
        panels = [
            overlay(to_uint8(image, trainer.datamodule), cam.cpu().numpy())
            for image, cam in zip(images.cpu(), cams, strict=True)
        ]
        self._log(trainer, f"explain/gradcam/{self.class_name}", panels)

    @rank_zero_only
    def _log(self, trainer: L.Trainer, key: str, panels: list[np.ndarray]) -> None:
        step = trainer.global_step
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=key, images=list(panels), step=step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):
                for i, panel in enumerate(panels):
                    logger.experiment.add_image(f"{key}/{i}", panel, step, dataformats="HWC")
            else:
                self._write(Path(logger.log_dir or trainer.default_root_dir), key, step, panels)
        if not trainer.loggers:
            self._write(Path(trainer.default_root_dir), key, step, panels)

    def _write(self, root: Path, key: str, step: int, panels: list[np.ndarray]) -> None:
        folder = root / "explain"
        folder.mkdir(parents=True, exist_ok=True)
        tag = key.removeprefix("explain/").replace("/", "_")
        for i, panel in enumerate(panels):
            Image.fromarray(panel).save(folder / f"{tag}_step{step:06d}_{i}.png")


def to_uint8(image: torch.Tensor, datamodule: object) -> np.ndarray:
    """A normalised ``(3, H, W)`` image back to ``uint8`` ``(H, W, 3)``, with the data module's
    ``mean``/``std`` when it has them, else by min-max scaling."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is not None and std is not None and len(mean) == image.shape[0]:
        image = image * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    else:
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
