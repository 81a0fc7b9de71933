"""``seglab explain``: Grad-CAM and saliency overlays for one image and one class of a trained model.

seglab explain --ckpt_path last.ckpt --image street.png --class car [--layer encoder] [--output_dir D]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from PIL import Image

from seglab.data.exif import ExifOrientation
from seglab.data.io import read_image
from seglab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.explain.cam import grad_cam, input_saliency, overlay, resolve_layer
from seglab.models import SegmentationModule


def class_index(name: str, class_names: list[str]) -> int:
    """A class by name, or by index when given as a number."""
    if name in class_names:
        return class_names.index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    raise ValueError(
        f"--class: {name!r} is not one of the model's classes: {', '.join(class_names)}"
    )


def explain_image(
    module: SegmentationModule,
    image: torch.Tensor,
    target_class: int,
    layer: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> dict[str, np.ndarray]:
    """``gradcam`` and ``saliency`` maps ``(H, W)`` in [0, 1] for a ``uint8`` image ``(3, H, W)``."""
    module.eval()
    param = next(module.parameters())
    x = image.float().div(255).to(param.device)
    x = (
        (x - torch.tensor(mean, device=x.device)[:, None, None])
        / torch.tensor(std, device=x.device)[:, None, None]
    )[None]
    cam = grad_cam(
        module.model, x, target_class, resolve_layer(module.model, layer), forward=module
    )
    saliency = input_saliency(module, x, target_class)
    return {"gradcam": cam[0].cpu().numpy(), "saliency": saliency[0].cpu().numpy()}


def main(argv: list[str]) -> dict[str, Path]:
    """Writes ``<image>_<class>_{gradcam,saliency}.png`` (overlays) and ``..._raw.png`` (the maps as
    grey levels); returns the written paths by kind."""
    parser = argparse.ArgumentParser(prog="seglab explain", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint of a seglab model")
    parser.add_argument("--image", required=True, help="image file to explain")
    parser.add_argument("--class", dest="cls", required=True, help="class name (or index)")
    parser.add_argument(
        "--layer",
        default=None,
        help="module path inside the network for Grad-CAM, e.g. encoder.layer3 "
        "(default: encoder, i.e. its last stage)",
    )
    parser.add_argument("--output_dir", default="explain", help="where the PNGs go")
    parser.add_argument(
        "--exif_orientation",
        choices=get_args(ExifOrientation),
        default="refuse",
        help="an image with an EXIF orientation: refuse it, use it as displayed (apply) or as "
        "stored (ignore); as data.exif_orientation in training",
    )
    parser.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN)
    parser.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD)
    args = parser.parse_args(argv)

    ckpt = Path(args.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--ckpt_path: {ckpt} is not a file")
    module = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu")
    target = class_index(args.cls, module.class_names)
    image = read_image(args.image, args.exif_orientation)
    maps = explain_image(module, image, target, args.layer, tuple(args.mean), tuple(args.std))

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rgb = image.permute(1, 2, 0).numpy()
    stem = f"{Path(args.image).stem}_{module.class_names[target]}"
    written: dict[str, Path] = {}
    for kind, heat in maps.items():
        written[kind] = out / f"{stem}_{kind}.png"
        Image.fromarray(overlay(rgb, heat)).save(written[kind])
        written[f"{kind}_raw"] = out / f"{stem}_{kind}_raw.png"
        Image.fromarray((heat * 255).round().astype(np.uint8)).save(written[f"{kind}_raw"])
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return written
