"""Joint image/mask transforms on ``torchvision.transforms.v2``.

Images are ``tv_tensors.Image`` (uint8) and masks ``tv_tensors.Mask``: v2 moves both together through
every geometric transform, resizes masks with nearest-neighbour interpolation and leaves masks alone
in photometric transforms. Padding fills the image with 0 and the mask with ``ignore_index`` so padded
pixels count nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Augment:
    """Training augmentation settings (``data.init_args.augment.*`` in a config)."""

    scale_range: tuple[float, float] = (0.5, 2.0)
    max_class_ratio: float = 1.0
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.1


def _uniform(low: float, high: float) -> float:
    # torch's generator, like torchvision's own transforms: one seed covers every random draw.
    return low + (high - low) * float(torch.rand(()))


def _randint(high: int) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(high + 1, ()))


def _find(flat_inputs: list[Any], kind: type) -> Tensor | None:
    return next((x for x in flat_inputs if isinstance(x, kind)), None)


class RandomScale(v2.Transform):
    """Resizes by one factor drawn uniformly from ``scale_range`` (aspect ratio kept)."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        super().__init__()
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = TF.get_size(_find(flat_inputs, tv_tensors.Image))
        s = _uniform(*self.scale_range)
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return TF.resize(inpt, params["size"], antialias=True)
        return inpt


class RandomCropPad(v2.Transform):
    """Random crop to ``size``, padding first where the input is smaller.

    With ``max_class_ratio < 1`` the crop is re-drawn (up to 10 times) while one class covers more than
    that fraction of its labelled pixels, so crops do not show only sky or road (mmsegmentation's
    ``cat_max_ratio``)."""

    def __init__(
        self, size: tuple[int, int], ignore_index: int = 255, max_class_ratio: float = 1.0
    ) -> None:
        super().__init__()
        self.size = size
        self.ignore_index = ignore_index
        self.max_class_ratio = max_class_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = TF.get_size(_find(flat_inputs, tv_tensors.Image))
        ch, cw = self.size
        pad = [0, 0, max(0, cw - w), max(0, ch - h)]  # left, top, right, bottom
        ph, pw = h + pad[3], w + pad[2]
        mask = _find(flat_inputs, tv_tensors.Mask)
        tries = 10 if (self.max_class_ratio < 1.0 and mask is not None) else 1
        for _ in range(tries):
            top, left = _randint(ph - ch), _randint(pw - cw)
            if tries == 1:
                break
            crop = mask[..., top : min(top + ch, h), left : min(left + cw, w)].reshape(-1)
            counts = torch.bincount(crop[crop != self.ignore_index].long())
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() < self.max_class_ratio * counts.sum():
                break
        return {"pad": pad, "top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return inpt
        if any(params["pad"]):
            fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
            inpt = TF.pad(inpt, params["pad"], fill=fill)
        return TF.crop(inpt, params["top"], params["left"], *self.size)


class RandomGamma(v2.Transform):
    """Gamma correction of the image with a factor drawn from ``gamma_range``."""

    def __init__(self, gamma_range: tuple[float, float] = (0.8, 1.25)) -> None:
        super().__init__()
        self.gamma_range = gamma_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"gamma": _uniform(*self.gamma_range)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Image):
            return TF.adjust_gamma(inpt, params["gamma"])
        return inpt


def normalize(
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> list[v2.Transform]:
    """uint8 image to float32 in [0, 1], then per-channel standardisation (masks untouched)."""
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean, std),
    ]


def train_transform(
    crop_size: tuple[int, int],
    augment: Augment,
    ignore_index: int = 255,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """Random scale, crop (padded, class-ratio re-try), flip, photometric jitter, normalisation."""
    steps: list[v2.Transform] = []
    if augment.scale_range != (1.0, 1.0):
        steps.append(RandomScale(augment.scale_range))
    steps.append(RandomCropPad(crop_size, ignore_index, augment.max_class_ratio))
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.extend(photometric(augment))
    steps.extend(normalize(mean, std))
    return v2.Compose(steps)


def photometric(augment: Augment) -> list[v2.Transform]:
    """Colour jitter, gamma and blur: image only, masks pass through."""
    steps: list[v2.Transform] = []
    a = augment
    if a.brightness or a.contrast or a.saturation or a.hue:
        steps.append(v2.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue))
    if tuple(a.gamma) != (1.0, 1.0):
        steps.append(RandomGamma(a.gamma))
    if a.blur_prob > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=a.blur_prob))
    return steps


def eval_transform(
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> v2.Compose:
    """Evaluation sees the whole image at its own size: normalisation only."""
    return v2.Compose(normalize(mean, std))
