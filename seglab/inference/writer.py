"""Writes predictions to disk batch by batch, so memory does not grow with the number of images.

Per input ``<stem>``: ``<stem>.png`` (class ids, the input's height and width), and optionally
``<stem>_color.png`` (a palette PNG), ``<stem>_overlay.png`` (colours blended over the image) and
``<stem>_probs.npy|.pt`` (float16 per-class probabilities ``(C, H, W)``).

Images that ``model.inference.streaming`` streams (larger than ``stream_above`` pixels, or
georeferenced) are predicted window by window after the other images
(``seglab.inference.streaming``; any bands and pixel type the model was trained on, checked as the
in-memory path checks each image) into ``<stem>.tif``: a GeoTIFF with the input's CRS, transform
and nodata, or a tiled TIFF, with the palette as its colour table; with probabilities also
``<stem>_probs.tif`` (``probabilities_dtype``). Several processes share each such image's windows;
process 0 writes the files.

Output names never collide: two inputs that would write the same file (``a.png`` and ``a.jpg``; or
``a.png`` and ``a_color.png`` with colour outputs) are refused before anything is written, and no
input's output replaces another's from the same run, with ``overwrite`` or without.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import Tensor

from seglab.data.exif import ExifOrientation
from seglab.data.io import DataError, display_rgb, read_image
from seglab.data.palette import default_palette
from seglab.errors import ConfigError
from seglab.inference.raster_files import image_size
from seglab.inference.streaming import (
    ProcessGroup,
    SingleProcess,
    model_fingerprint,
    should_stream,
    stream_predict,
)


@rank_zero_only
def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StrategyGroup:
    """The processes of a Lightning strategy, as ``seglab.inference.streaming`` needs them."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.rank, self.world_size = strategy.global_rank, strategy.world_size

    def barrier(self) -> None:
        self.strategy.barrier("seglab-streamed-prediction")

    def any(self, flag: bool) -> bool:
        value = torch.tensor(float(flag), device=self.strategy.root_device)
        return bool(self.strategy.reduce(value, reduce_op="sum") > 0)


class PredictionWriter(BasePredictionWriter):
    """Saves each predicted batch under ``output_dir``. Before the first batch, every input's output
    names are worked out: two inputs that would share an output file are an error, and so is an
    output that exists already unless ``overwrite``. Overlays read the input image with the data
    module's ``exif_orientation``, as the prediction did.

    Args:
        output_dir: directory for the outputs (created).
        overwrite: replace existing outputs instead of stopping.
        color: also write a palette PNG of the classes.
        overlay: also write the palette colours blended over the input image.
        overlay_alpha: weight of the colours in the overlay.
        probabilities: also write per-class probabilities as ``npy`` or ``pt`` (float16).
        palette: ``(R, G, B)`` per class id; default: ``default_palette``.
        probabilities_dtype: the type of streamed images' probability TIFFs: ``uint8`` (0-255
            for 0-1) or ``float16`` (tiled TIFF only: GDAL before 3.11 writes no float16).
        cog: copy streamed GeoTIFF outputs to Cloud-Optimized GeoTIFFs when finished.
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
        probabilities_dtype: Literal["uint8", "float16"] = "uint8",
        cog: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.color, self.overlay, self.overlay_alpha = color, overlay, overlay_alpha
        self.probabilities = probabilities
        self.palette = None if palette is None else np.asarray(palette, np.uint8)
        self.exif_orientation: ExifOrientation = "refuse"  # the data module's, on predict start
        self.written: dict[Path, str] = {}  # output file -> the input it was written for
        if probabilities_dtype not in ("uint8", "float16"):
            raise ConfigError(
                f"--probabilities_dtype must be uint8 or float16, got {probabilities_dtype!r}"
            )
        self.probabilities_dtype, self.cog = probabilities_dtype, cog
        self.streamed: list[Path] = []  # inputs predicted window by window

    def output_names(self, source: str) -> dict[str, str]:
        """The file names (by kind) that the input named ``source`` is written to."""
        stem = Path(source).stem
        names = {"ids": f"{stem}.png"}
        if self.color:
            names["color"] = f"{stem}_color.png"
        if self.overlay:
            names["overlay"] = f"{stem}_overlay.png"
        if self.probabilities:
            names["probs"] = f"{stem}_probs.{self.probabilities}"
        return names

    def check_outputs(self, sources: Sequence[str]) -> None:
        """Refuses inputs whose outputs would collide, and outputs that exist already (unless
        ``overwrite``), before anything is written."""
        owners: dict[str, str] = {}
        for source in sources:
            for name in self.output_names(source).values():
                if name in owners:
                    raise DataError(
                        f"{source} and {owners[name]} would both be written to "
                        f"{self.output_dir / name}; rename one (outputs are named after the "
                        "input's stem)"
                    )
                owners[name] = source
        if not self.overwrite:
            existing = [self.output_dir / n for n in owners if (self.output_dir / n).exists()]
            if existing:
                more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
                raise FileExistsError(
                    f"{existing[0]}: prediction output exists already{more}; pass --overwrite "
                    "true to replace outputs of earlier runs"
                )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict":
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if self.palette is None:  # the model's (its data's) palette, else VOC's colours
                recorded = getattr(getattr(pl_module, "hparams", {}), "palette", None)
                self.palette = np.asarray(recorded or default_palette(), np.uint8)
            self.streamed = self.take_streamed(trainer, pl_module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # After the predict loop (which may have nothing left to run): the checkpoint's weights
        # are loaded by now, the processes still connected.
        if stage == "predict" and self.streamed:
            self.predict_streamed(trainer, pl_module)

    def streamed_names(self, source: str | Path) -> dict[str, str]:
        """The files a streamed input is written to."""
        stem = Path(source).stem
        names = {"ids": f"{stem}.tif"}
        if self.probabilities:
            names["probs"] = f"{stem}_probs.tif"
        return names

    def take_streamed(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Path]:
        """The images of ``--data.predict_dir`` that ``model.inference.streaming`` streams, taken
        out of the predict dataset (the loop predicts the others in memory). Every process
        computes the same list."""
        settings = getattr(pl_module, "inference", None)
        data = trainer.datamodule
        if settings is None or settings.streaming == "never" or data is None:
            return []
        if not getattr(data, "predict_dir", None) or not hasattr(data, "predict_dataset"):
            return []
        dataset = data.predict_dataset()
        paths = getattr(dataset, "paths", None)
        if paths is None:
            return []
        streamed = [Path(p) for p in paths if should_stream(settings, *image_size(p))]
        if not streamed:
            return []
        owners: dict[str, str] = {}
        others = [p for p in paths if Path(p) not in streamed]
        for source in [*others, *streamed]:
            names = self.streamed_names(source) if Path(source) in streamed else None
            for name in (names or self.output_names(str(source))).values():
                if name in owners:
                    raise DataError(
                        f"{source} and {owners[name]} would both be written to "
                        f"{self.output_dir / name}; rename one (outputs are named after the "
                        "input's stem)"
                    )
                owners[name] = str(source)
        dataset.paths = others
        return streamed

    def predict_streamed(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Predicts the streamed images window by window, every process sharing each image.
        Runs when the predict loop is done (``teardown``), with the model on the strategy's
        device in eval mode and the trainer's precision."""
        if trainer.datamodule is not None and hasattr(pl_module, "adopt_data_settings"):
            pl_module.adopt_data_settings(trainer.datamodule)
        hp = pl_module.hparams
        if hp.get("mean") is None or hp.get("std") is None:
            raise ConfigError(
                "streamed prediction: the model records no normalisation (mean/std) and the data "
                "module gives none; set --data.mean and --data.std"
            )
        if self.color or self.overlay:
            _say(
                "seglab: --save_color/--save_overlay are not written for streamed images (their "
                "class-id TIFF carries the palette as its colour table)"
            )
        device = trainer.strategy.root_device
        was_training = pl_module.training
        pl_module.to(device).eval()
        group: ProcessGroup = (
            StrategyGroup(trainer.strategy) if trainer.world_size > 1 else SingleProcess()
        )
        model_id = model_fingerprint(pl_module)
        exif = getattr(trainer.datamodule, "exif_orientation", "refuse")
        # The check the data module's in-memory predict applies to each image (bands, type).
        input_check = getattr(trainer.datamodule, "input_check", None)
        check = input_check() if callable(input_check) else None
        try:
            for image in self.streamed:
                names = self.streamed_names(image)
                with torch.no_grad(), trainer.precision_plugin.forward_context():
                    result = stream_predict(
                        pl_module,
                        image,
                        self.output_dir / names["ids"],
                        pl_module.inference,
                        mean=hp.mean,
                        std=hp.std,
                        num_classes=hp.num_classes,
                        in_channels=hp.in_channels,
                        palette=self.palette.tolist(),
                        probabilities=self.probabilities_dtype if self.probabilities else None,
                        overwrite=self.overwrite,
                        cog=self.cog,
                        model_id=model_id,
                        group=group,
                        progress=trainer.progress_bar_callback is not None,
                        device=device,
                        exif_orientation=exif,
                        check=check,
                    )
                resumed = (
                    f"; resumed: {result.bands_done_before} of {result.bands} row bands were "
                    "done by an earlier run"
                    if result.bands_done_before
                    else ""
                )
                _say(
                    f"seglab: {image} -> {result.outputs[0]} (streamed, {result.tiles} tiles, "
                    f"{result.seconds:.1f} s{resumed})"
                )
        finally:
            pl_module.train(was_training)
            pl_module.cpu()  # where the strategy's teardown left it
            self.streamed = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.written = {}
        self.exif_orientation = getattr(trainer.datamodule, "exif_orientation", "refuse")
        self.check_outputs(input_names(trainer.predict_dataloaders))

    def _target(self, name: str, source: str) -> Path:
        path = self.output_dir / name
        # Inputs the up-front check could not name (datasets without files) are caught here.
        if path in self.written:
            raise DataError(
                f"{path}: written for {self.written[path]} in this run already; {source} would "
                "replace it. Rename one of them"
            )
        if path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{path}: prediction output exists already; pass --overwrite true to replace it"
            )
        self.written[path] = source
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
            # Check every file of this input before writing any: no half-written outputs.
            names_out = self.output_names(source)
            paths = {key: self._target(name, source) for key, name in names_out.items()}
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
            image = display_rgb(read_image(source, self.exif_orientation)).astype(np.float32)
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


def input_names(loaders: Any) -> list[str]:
    """The names (image paths) of every input of the predict loaders whose datasets can say them
    without decoding (``image_file(index)``, as seglab's datasets do)."""
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    names = []
    for loader in loaders if isinstance(loaders, list | tuple) else [loaders]:
        dataset = getattr(loader, "dataset", None)
        if not hasattr(dataset, "image_file"):
            continue
        files = [dataset.image_file(i) for i in range(len(dataset))]
        names += [str(f) for f in files if f is not None]
    return names
