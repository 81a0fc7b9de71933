"""``seglab explain``: Grad-CAM and saliency overlays of one image for one class of a trained model.

    seglab explain --ckpt_path last.ckpt --image street.png --class car [--layer encoder.layer3]
                   [--output_dir explain] [--config experiments/X.yaml --data.* ...]

The image is read with the experiment's data settings (``--config``/``--data.*``:
``exif_orientation``), as training reads it, and normalised as the model records it was trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lightning.pytorch.cli import LightningArgumentParser
from PIL import Image

from seglab.cli.experiment import ExperimentCommand
from seglab.data.io import display_rgb, read_image
from seglab.errors import ConfigError
from seglab.explain.cam import explain_image, overlay


def class_index(name: str, class_names: list[str]) -> int:
    """A class by name, or by index when given as a number."""
    if name in class_names:
        return class_names.index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    raise ConfigError(
        f"--class: {name!r} is not one of the model's classes: {', '.join(class_names)}"
    )


class ExplainCommand(ExperimentCommand):
    name = "explain"
    description = "Grad-CAM and saliency overlays of one image for one class of a trained model."

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str, required=True, help="a seglab checkpoint")
        parser.add_argument("--image", type=str, required=True, help="image file to explain")
        parser.add_argument("--class", dest="target", type=str, required=True, help="class name")
        parser.add_argument(
            "--layer",
            type=str | None,
            default=None,
            help="module path in the network for Grad-CAM, e.g. encoder.layer3 (default: the "
            "encoder, i.e. its last stage)",
        )
        parser.add_argument("--output_dir", type=str, default="explain", help="where PNGs go")

    def run(self) -> int:
        """Writes ``<image>_<class>_{gradcam,saliency}.png`` (overlays) and ``..._raw.png`` (the
        maps as grey levels); ``written`` holds their paths by kind."""
        module = self.trained_module()
        target = class_index(self.config.target, module.class_names)
        data = self.config.data.get("init_args") or {}
        image = read_image(self.config.image, data.get("exif_orientation", "refuse"))
        # As the model was trained: its recorded normalisation (else the data's, else ImageNet's).
        mean = module.hparams.mean or data.get("mean")
        std = module.hparams.std or data.get("std")
        normalisation = {"mean": tuple(mean), "std": tuple(std)} if mean and std else {}
        maps = explain_image(module, image, target, self.config.layer, **normalisation)
        out = Path(self.config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        rgb = display_rgb(image)  # any bands and type: a picture to draw on
        stem = f"{Path(self.config.image).stem}_{module.class_names[target]}"
        self.written: dict[str, Path] = {}
        written = self.written
        for kind, heat in maps.items():
            written[kind] = out / f"{stem}_{kind}.png"
            Image.fromarray(overlay(rgb, heat)).save(written[kind])
            written[f"{kind}_raw"] = out / f"{stem}_{kind}_raw.png"
            Image.fromarray((heat * 255).round().astype(np.uint8)).save(written[f"{kind}_raw"])
        for kind, path in written.items():
            print(f"{kind}: {path}")
        return 0
