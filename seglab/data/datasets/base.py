"""The dataset contract shared by every data source, and the wrapper that turns its samples into
training or evaluation samples.

Where each step of the data path happens (``seglab.data.datamodule`` puts them together)::

    SegmentationDataset.read(i)  decode (``load``, one per data source), check (``check_sample``)
      -> DecodedCache.read(i)    optional: the same samples from the cache (``seglab.data.cache``)
      -> TransformedDataset[i]   the transform: scale, crop, flip, jitter, normalise (training) or
                                 normalise only (evaluation); a ``{"image", "mask", "name"}`` dict
      -> DataLoader              batches (with ``augment_on_device``: flips and photometric ops on
                                 the device, after the transfer)

``read`` is the one place a sample is loaded and checked: the dataset itself, the cache build, class
statistics (``seglab.data.stats``) and ``seglab check-data`` all read through it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from seglab.data.io import DataError


class SegmentationDataset(Dataset):
    """Subclasses implement ``__len__`` and
    ``load(index) -> (image (C,H,W), mask (H,W), name)`` (image ``uint8``, or ``float32`` raw values
    of other types: ``seglab.data.io``) where ``name`` identifies the sample
    (its image path) in error messages and predictions, and, when samples come from files,
    ``image_file`` and ``mask_file``.

    ``read(index)`` is ``load`` followed by ``check_sample``: a mask value that is neither a class
    id nor ``ignore_index`` or an image/mask size mismatch raises a ``DataError`` naming the mask
    file, instead of a CUDA device-side assert later. Everything reads samples through it; indexing
    the dataset gives the checked sample as ``{"image", "mask", "name"}`` (mask int64),
    untransformed.

    ``problems`` lists the files of the split that could not become samples (a broken link, an
    image without a mask...), each named: the data module refuses a dataset that has any, and
    ``seglab check-data`` reports them beside the problems of the samples themselves.

    Datasets hold no transform and no cache: the data module wraps them, in a ``DecodedCache``
    (``seglab.data.cache``: needs ``source_files``, what to watch for changes, and
    ``cache_settings``, what else decides the content) and a ``TransformedDataset``."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.problems: list[str] = []

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        """Sample ``index`` decoded, unchecked: ``(image uint8 (C,H,W), mask (H,W), name)``."""
        raise NotImplementedError

    def read(self, index: int) -> tuple[Tensor, Tensor, str]:
        """Sample ``index`` decoded and checked: ``(image (C,H,W), mask (H,W), name)``."""
        image, mask, name = self.load(index)
        check_sample(image, mask, name, self.num_classes, self.ignore_index, self.mask_file(index))
        return image, mask, name

    def image_file(self, index: int) -> Path | None:
        """The image file of sample ``index`` (``None`` for generated samples)."""
        return None

    def mask_file(self, index: int) -> Path | None:
        """The mask file of sample ``index``, named by mask errors (``None`` for generated
        samples)."""
        return None

    def source_files(self, index: int) -> list[Path]:
        """The files sample ``index`` is decoded from: a cached sample is decoded again when one of
        them changes. ``[]`` for generated samples (keyed by ``cache_settings`` alone)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not say which files its samples come from (source_files)"
        )

    def cache_settings(self) -> dict[str, Any]:
        """Everything besides the source files that decides what ``load`` returns (label mappings,
        palettes, ``ignore_index``...): by default every attribute but ``problems``."""
        return {k: v for k, v in vars(self).items() if k != "problems"}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return as_sample(*self.read(index), self.ignore_index)


class SampleSource(Protocol):
    """What reads checked samples: a ``SegmentationDataset``, or the ``DecodedCache`` around one."""

    num_classes: int
    ignore_index: int
    problems: list[str]

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[Tensor, Tensor, str]: ...

    def image_file(self, index: int) -> Path | None: ...

    def mask_file(self, index: int) -> Path | None: ...


def as_sample(
    image: Tensor,
    mask: Tensor,
    name: str,
    ignore_index: int = 255,
    transform: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """A read sample as ``{"image", "mask" (int64), "name"}``, through ``transform(image, mask)``
    (``tv_tensors.Image`` and ``Mask``) if given. A uint8 mask becomes int64 first when
    ``ignore_index`` does not fit in it (a crop pads masks with ``ignore_index``)."""
    if ignore_index > 255 and mask.dtype == torch.uint8:
        mask = mask.long()
    if transform is not None:
        image, mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return {
        "image": image.as_subclass(Tensor),
        "mask": mask.as_subclass(Tensor).long(),
        "name": name,
    }


class TransformedDataset(Dataset):
    """The samples of ``source`` (a ``SegmentationDataset`` or a ``DecodedCache``), each read and
    passed through ``transform(image, mask)``: ``{"image", "mask" (int64), "name"}`` dicts, what the
    data module's loaders batch. ``source`` stays reachable for what needs the whole raw samples
    (class statistics count its masks, never the random crops)."""

    def __init__(
        self,
        source: SampleSource,
        transform: Callable[..., Any] | None = None,
        check: Callable[[Tensor, str], None] | None = None,
    ) -> None:
        self.source = source
        self.transform = transform
        self.check = check  # check(image, name): e.g. that the normalisation fits its bands

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, name = self.source.read(index)
        if self.check is not None:
            self.check(image, name)
        return as_sample(image, mask, name, self.source.ignore_index, self.transform)

    def image_file(self, index: int) -> Path | None:
        return self.source.image_file(index)

    def mask_file(self, index: int) -> Path | None:
        return self.source.mask_file(index)


def check_sample(
    image: Tensor,
    mask: Tensor,
    name: str,
    num_classes: int,
    ignore_index: int,
    mask_name: str | Path | None = None,
) -> None:
    """Refuses a sample the model cannot learn from correctly. Mask problems name ``mask_name`` (the
    mask file), image problems ``name`` (the sample, its image file)."""
    if image.ndim != 3 or image.dtype not in (torch.uint8, torch.float32):
        raise DataError(
            f"{name}: expected a uint8 or float32 image (C, H, W), got {image.dtype} "
            f"{tuple(image.shape)}"
        )
    mask_name = mask_name or f"{name} (its mask)"
    if image.shape[-2:] != mask.shape[-2:]:
        raise DataError(
            f"{mask_name}: mask is {mask.shape[-2]}x{mask.shape[-1]} (HxW) but its image {name} is "
            f"{image.shape[-2]}x{image.shape[-1]}"
        )
    if mask.dtype == torch.uint8:
        # This runs for every sample of every epoch: numpy's vectorised uint8 comparisons take
        # ~30 us on a 360x480 mask, a quarter of torch.bincount and a tenth of torch's comparisons.
        pixels = mask.numpy()
        bad = (pixels >= num_classes) & (pixels != ignore_index)
        values = np.unique(pixels[bad]).tolist() if bad.any() else []
    else:
        bad = ((mask >= num_classes) & (mask != ignore_index)) | (mask < 0)
        values = sorted(set(mask[bad].unique().tolist())) if bad.any() else []
    if values:
        raise DataError(
            f"{mask_name}: mask has values {values[:10]} that are neither class ids "
            f"0..{num_classes - 1} nor ignore_index {ignore_index}"
        )
