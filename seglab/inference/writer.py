"""Writes predictions to disk batch by batch, so memory does not grow with the number of images.

Per input ``<stem>``: ``<stem>.png`` (class ids, the input's height and width), and optionally
``<stem>_color.png`` (a palette PNG), ``<stem>_overlay.png`` (colours blended over the image) and
``<stem>_probs.npy|.pt`` (float16 per-class probabilities ``(C, H, W)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor

from seglab.data.io import read_image
from seglab.errors import ConfigError


def default_palette(num_classes: int = 256) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours, the same on every run: the bit-interleaving palette of
    PASCAL VOC (class 0 black, then well-separated colours)."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        value, shift = index, 7
        while value:
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette


class PredictionWriter(BasePredictionWriter):
    """Saves each predicted batch under ``output_dir``; a file that exists already is an error
    unless ``overwrite``.

    Args:
        output_dir: directory for the outputs (created).
        overwrite: replace existing outputs instead of stopping.
        color: also write a palette PNG of the classes.
        overlay: also write the palette colours blended over the input image.
        overlay_alpha: weight of the colours in the overlay.
        probabilities: also write per-class probabilities as ``npy`` or ``pt`` (float16).
        palette: ``(R, G, B)`` per class id; default: ``default_palette``.
    """

    def __init__(
        self,
        output_dir: str | Path,
        overwrite: bool = False,
        color: bool = False,
        overlay: bool = False,
        overlay_alpha: float = 0.5,
        probabilities: Literal["npy", "pt"] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.color, self.overlay, self.overlay_alpha = color, overlay, overlay_alpha
        self.probabilities = probabilities
        self.palette = None if palette is None else np.asarray(palette, np.uint8)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict":
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if self.palette is None:  # the model's (its data's) palette, else VOC's colours
                recorded = getattr(getattr(pl_module, "hparams", {}), "palette", None)
                self.palette = np.asarray(recorded or default_palette(), np.uint8)

    def _target(self, name: str) -> Path:
        path = self.output_dir / name
        if path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{path}: prediction output exists already; pass --overwrite true to replace it"
            )
        return path

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if isinstance(prediction, dict):
            masks, probs = prediction["mask"], prediction.get("probs")
        else:
            masks, probs = prediction, None
        if self.probabilities and probs is None:
            raise ConfigError(
                f"PredictionWriter(probabilities={self.probabilities!r}) needs probabilities from "
                "predict_step: set model.inference.output: probabilities"
            )
        names = batch["name"] if isinstance(batch, dict) and "name" in batch else None
        for i, mask in enumerate(masks):
            source = names[i] if names is not None else f"{batch_idx:06d}_{i}"
            stem = Path(source).stem
            # Check every file of this input before writing any: no half-written outputs.
            names_out = {"ids": f"{stem}.png"}
            if self.color:
                names_out["color"] = f"{stem}_color.png"
            if self.overlay:
                names_out["overlay"] = f"{stem}_overlay.png"
            if self.probabilities:
                names_out["probs"] = f"{stem}_probs.{self.probabilities}"
            paths = {key: self._target(name) for key, name in names_out.items()}
            ids = mask.to("cpu", torch.int64).numpy()
            top = int(ids.max(initial=0))
            Image.fromarray(ids.astype(np.uint8 if top < 256 else np.uint16)).save(paths["ids"])
            if (self.color or self.overlay) and top >= min(len(self.palette), 256):
                raise ValueError(f"{source}: class id {top} has no colour in the palette")
            if self.color:
                color = Image.fromarray(ids.astype(np.uint8))
                color.putpalette(self.palette[:256].reshape(-1).tolist())  # "L" becomes "P"
                color.save(paths["color"])
            if self.overlay:
                self._write_overlay(source, ids, paths["overlay"])
            if "probs" in paths:
                self._write_probabilities(probs[i], paths["probs"])

    def _write_overlay(self, source: str, ids: np.ndarray, path: Path) -> None:
        """Colours over the original image file (not the normalized tensor)."""
        if Path(source).is_file():
            image = read_image(source).permute(1, 2, 0).numpy().astype(np.float32)
        else:
            image = np.zeros((*ids.shape, 3), np.float32)
        colors = self.palette[ids].astype(np.float32)
        blend = (1 - self.overlay_alpha) * image + self.overlay_alpha * colors
        Image.fromarray(blend.round().clip(0, 255).astype(np.uint8)).save(path)

    def _write_probabilities(self, probs: Tensor, path: Path) -> None:
        probs = probs.detach().to("cpu", torch.float16)
        if self.probabilities == "pt":
            torch.save(probs, path)
        else:
            np.save(path, probs.numpy())
