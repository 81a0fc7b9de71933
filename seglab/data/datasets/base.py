"""The dataset contract shared by every data source: decode one sample, check it, transform it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from seglab.data.io import DataError


class SegmentationDataset(Dataset):
    """Subclasses implement ``__len__`` and ``load(index) -> (image uint8 (3,H,W), mask (H,W), name)``
    where ``name`` identifies the sample (its image path) in error messages and predictions, and,
    when samples come from files, ``image_file`` and ``mask_file``.

    Every sample is checked before it is used: a mask value that is neither a class id nor
    ``ignore_index`` or an image/mask size mismatch raises a ``DataError`` naming the mask file,
    instead of a CUDA device-side assert later.

    ``problems`` lists the files of the split that could not become samples (a broken link, an
    image without a mask...), each named: the data module refuses a dataset that has any, and
    ``seglab check-data`` reports them beside the problems of the samples themselves.

    With a decoded-sample cache attached (``cache``, see ``seglab.data.cache``) samples are read from
    it instead of ``load``; checks and transforms run the same either way. Caching needs
    ``source_files`` (what to watch for changes) and ``cache_settings`` (what else decides the content)."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        transform: Callable[..., Any] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.problems: list[str] = []
        self.cache: Any = None  # a seglab.data.cache.DecodedCache

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        raise NotImplementedError

    def image_file(self, index: int) -> Path | None:
        """The image file of sample ``index`` (``None`` for generated samples)."""
        return None

    def mask_file(self, index: int) -> Path | None:
        """The mask file of sample ``index``, named by mask errors (``None`` for generated samples)."""
        return None

    def source_files(self, index: int) -> list[Path]:
        """The files sample ``index`` is decoded from: a cached sample is decoded again when one of
        them changes. ``[]`` for generated samples (keyed by ``cache_settings`` alone)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not say which files its samples come from (source_files)"
        )

    def cache_settings(self) -> dict[str, Any]:
        """Everything besides the source files that decides what ``load`` returns (label mappings,
        palettes, ``ignore_index``...): by default every attribute but the transform and the cache."""
        return {k: v for k, v in vars(self).items() if k not in ("transform", "cache", "problems")}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.cache is not None:  # checked when cached, with these classes and ignore_index
            image, mask, name = self.cache.read(index)
        else:
            image, mask, name = self.load(index)
            check_sample(
                image, mask, name, self.num_classes, self.ignore_index, self.mask_file(index)
            )
        if self.ignore_index > 255 and mask.dtype == torch.uint8:
            mask = mask.long()
        image, mask = tv_tensors.Image(image), tv_tensors.Mask(mask)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return {
            "image": image.as_subclass(Tensor),
            "mask": mask.as_subclass(Tensor).long(),
            "name": name,
        }


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
    if image.ndim != 3 or image.dtype != torch.uint8:
        raise DataError(
            f"{name}: expected a uint8 image (C, H, W), got {image.dtype} {tuple(image.shape)}"
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
