"""The one normalisation: pixels on the 0-255 scale to what the network sees.

``(image / 255 - mean) / std`` per channel. Every path from pixels to the network goes through
``normalize``: the evaluation and predict transforms, the training augmentation (which folds it into
one 256-entry table per sample and channel together with gamma, ``seglab.data.augment``),
``SegmentationModule.segment``, exported graphs that take uint8 input and explanations. A model
records its ``mean``/``std`` so that its checkpoint alone says how to feed it.

The scaling rule, for every numeric type: the network sees ``(value / 255 - mean) / std`` per band.
``uint8`` images are on the 0-255 scale, so ``value / 255`` lies in [0, 1] and ImageNet's
``mean``/``std`` are the default for 3-band ``uint8`` data. Images of every other type (``uint16``,
``int16``, ``float32``...: ``seglab.data.io`` gives them as ``float32`` raw values) are divided by
255 just the same, and their ``mean``/``std`` must be the per-band statistics of ``value / 255``
over the training split, which ``seglab stats`` computes (``seglab.data.stats.band_statistics``).
No range is assumed (a 12-bit sensor in ``uint16``, reflectances in ``float32``): the statistics
put every band near zero mean and unit variance. A data module refuses such images, or any
number of bands other than 3, without per-band ``mean``/``std`` rather than use ImageNet's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from seglab.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_normalization(mean: Sequence[float], std: Sequence[float], owner: str = "data") -> None:
    """Refuses a ``mean``/``std`` pair that cannot normalise: different lengths, a std <= 0."""
    if len(mean) != len(std) or len(mean) == 0:
        raise ConfigError(
            f"{owner}.mean and {owner}.std need one value per channel each, got {len(mean)} and "
            f"{len(std)}"
        )
    if min(std) <= 0:
        raise ConfigError(f"{owner}.std must be positive, got {list(std)}")


def normalize(
    images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor
) -> Tensor:
    """``(images / 255 - mean) / std`` with channels at dim -3: ``images`` uint8 or floating point
    on the 0-255 scale, ``(..., C, H, W)``. Integer input gives float32; floating point input keeps
    its type. Traceable (export): plain tensor operations, ``mean``/``std`` may be tensors."""
    x = images if images.is_floating_point() else images.to(torch.float32)
    shape = (-1, 1, 1)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x / 255 - mean) / std


def denormalize(
    images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor
) -> Tensor:
    """The inverse of ``normalize``: network inputs back to uint8 pixels (for pictures)."""
    shape = (-1, 1, 1)
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return ((images * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


def are_data_statistics(mean: Sequence[float], std: Sequence[float]) -> bool:
    """Whether ``mean``/``std`` can be a dataset's own per-band statistics: anything but ImageNet's
    defaults, which are for 8-bit RGB only (also when a checkpoint recorded them: a model trained
    on them was trained on ``uint8`` images)."""
    as_floats = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    return as_floats != (IMAGENET_MEAN, IMAGENET_STD)


def check_input(
    image: Tensor, name: str, mean: Sequence[float], statistics_given: bool = True
) -> None:
    """Refuses an image the normalisation does not fit, naming ``name`` (its file): a number of
    bands other than ``len(mean)``, or, when ``mean``/``std`` are not the data's own statistics
    (``statistics_given`` False: ImageNet's defaults), bands that are not ``uint8``."""
    bands = image.shape[-3]
    if bands == len(mean) and (statistics_given or image.dtype == torch.uint8):
        return
    kind = "uint8" if image.dtype == torch.uint8 else "non-uint8 (read as float32 raw values)"
    if statistics_given:
        got = f"data.mean/data.std have {len(mean)} values (one per band)"
    else:
        got = "data.mean/data.std are not given (ImageNet's 3 values are for 8-bit RGB only)"
    raise ConfigError(
        f"{name}: image has {bands} {kind} bands but {got}; compute per-band statistics with "
        "`seglab stats --config X.yaml` and set data.mean and data.std"
    )
