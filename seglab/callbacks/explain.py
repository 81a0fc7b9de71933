"""Logs Grad-CAM heat maps of a fixed set of validation images every few epochs, so one can watch
where the model looks as it trains."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from seglab.callbacks.images import fixed_validation_samples, log_images, to_uint8
from seglab.errors import ConfigError
from seglab.explain.cam import grad_cam, overlay, resolve_layer

__all__ = ["ExplainImages", "to_uint8"]


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
            raise ConfigError("ExplainImages: num_images and every_n_epochs must be at least 1")
        self.class_name, self.layer = class_name, layer
        self.num_images, self.every_n_epochs = num_images, every_n_epochs
        self.images: list[torch.Tensor] | None = None

    def _fixed_images(self, trainer: L.Trainer) -> list[torch.Tensor]:
        if self.images is None:
            self.images, _ = fixed_validation_samples(trainer, self.num_images)
        return self.images

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        names = list(pl_module.class_names)
        if self.class_name not in names:
            raise ConfigError(
                f"ExplainImages.class_name: {self.class_name!r} is not one of {', '.join(names)}"
            )
        target = names.index(self.class_name)
        was_training = pl_module.training
        pl_module.eval()
        # Validation runs under inference mode; Grad-CAM needs autograd.
        with torch.inference_mode(False):
            layer = resolve_layer(pl_module.model, self.layer)
            cams = [  # one image at a time: sizes may differ
                grad_cam(
                    pl_module.model,
                    image[None].to(pl_module.device),
                    target,
                    layer,
                    forward=pl_module,
                )[0]
                for image in self._fixed_images(trainer)
            ]
        pl_module.train(was_training)
        panels = [
            overlay(to_uint8(image, trainer.datamodule), cam.cpu().numpy())
            for image, cam in zip(self._fixed_images(trainer), cams, strict=True)
        ]
        self._log(trainer, f"explain/gradcam/{self.class_name}", panels)

    @rank_zero_only
    def _log(self, trainer: L.Trainer, key: str, panels: list[np.ndarray]) -> None:
        log_images(trainer, key, panels)
