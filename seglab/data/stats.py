"""Class statistics of training data: how many pixels of each class every sample holds.

``class_pixel_counts`` gives the ``(N, num_classes)`` table that rare-class sampling
(``seglab.data.sampling``) and class weights are computed from, for any data module whose training
set ``training_set`` finds, e.g. median-frequency weights::

    counts = class_pixel_counts(training_set(datamodule)).sum(0)
    freq = counts / counts.sum()
    weight = freq[freq > 0].median() / freq   # inf for a class that never occurs

Where the counts come from: seglab's own samples are counted whole, as ``read`` gives them (the
dataset's decode and check, or the decoded cache), never the random training crops; any other
map-style dataset is counted as it returns its samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from seglab.data.cache import DecodedCache
from seglab.data.datasets.base import SegmentationDataset, TransformedDataset
from seglab.errors import ConfigError, DataError


def label_counts(mask: Tensor, ignore_index: int, minlength: int = 0) -> Tensor:
    """Pixels per class id of an integer mask (any shape), ``ignore_index`` counted nowhere: int64
    ``(max(minlength, largest id + 1),)``."""
    flat = mask.reshape(-1)
    if ignore_index < 0:
        flat = flat[flat != ignore_index]
    counts = torch.bincount(flat, minlength=minlength)
    if 0 <= ignore_index < len(counts):
        counts[ignore_index] = 0
    return counts


def training_set(datamodule: Any) -> Dataset:
    """The training set of a data module: its ``train_dataset()`` method's (seglab's data modules)
    or its ``train_dataset`` attribute holding a ``Dataset`` (torchgeo's style, and many users' own;
    set once the module is set up). Anything else is a ``ConfigError`` naming the module's class."""
    found = getattr(datamodule, "train_dataset", None)
    if callable(found) and not _is_dataset(found):
        found = found()
    if _is_dataset(found):
        return found
    got = "none" if found is None else f"a {type(found).__name__}"
    raise ConfigError(
        f"{type(datamodule).__name__} has no training set to count class pixels in: it needs a "
        f"`train_dataset` attribute holding a Dataset (once set up) or a `train_dataset()` method "
        f"returning one (got {got})"
    )


def _is_dataset(value: Any) -> bool:
    """A map-style dataset: a torch ``Dataset``, or anything with ``len`` and indexing."""
    if isinstance(value, Dataset):
        return True
    return hasattr(value, "__getitem__") and hasattr(value, "__len__") and not callable(value)


def _parts(dataset: Any) -> list[Any]:
    """The datasets a (nested) ``ConcatDataset`` is made of, in order."""
    if isinstance(dataset, ConcatDataset):
        return [part for child in dataset.datasets for part in _parts(child)]
    return [dataset]


def _source(part: Any) -> SegmentationDataset | DecodedCache | None:
    """The seglab source whose whole samples ``part`` shows, if it is one of seglab's."""
    if isinstance(part, TransformedDataset):
        part = part.source
    return part if isinstance(part, SegmentationDataset | DecodedCache) else None


class _SourceCounts(Dataset):
    """Class pixel counts of each whole sample of a seglab source, as ``read`` gives it (checked:
    by the dataset, or when the cache was built)."""

    def __init__(self, source: SegmentationDataset | DecodedCache, num_classes: int) -> None:
        self.source = source
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Tensor:
        _, mask, _ = self.source.read(index)
        counts = label_counts(mask, self.source.ignore_index, self.num_classes)
        return counts[: self.num_classes]


def sample_mask(sample: Any) -> Tensor:
    """The mask of one sample of a map-style dataset, as an integer tensor: a dict's ``mask``, or
    the second item of an ``(image, mask, ...)`` sequence (``seglab.data.batch.unpack_batch``'s
    formats, for one sample)."""
    if isinstance(sample, Mapping):
        mask = sample.get("mask")
    elif isinstance(sample, Sequence) and not isinstance(sample, str) and len(sample) > 1:
        mask = sample[1]
    else:
        mask = None
    if mask is None:
        raise DataError(
            f"class_pixel_counts: a sample is a {type(sample).__name__}; expected a dict with a "
            "'mask' key or an (image, mask) tuple"
        )
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask)
    if mask.is_floating_point() or mask.dtype == torch.bool or mask.is_complex():
        raise DataError(
            f"class_pixel_counts: masks must hold integer class ids, got {mask.dtype} masks"
        )
    return mask


class _SampleCounts(Dataset):
    """Class pixel counts of each sample of any map-style dataset, as it returns them."""

    def __init__(self, dataset: Any, num_classes: int | None, ignore_index: int) -> None:
        self.dataset = dataset
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        mask = sample_mask(self.dataset[index]).long()
        kept = mask[mask != self.ignore_index]
        if not kept.numel():
            return torch.zeros(self.num_classes or 0, dtype=torch.long)
        low, high = int(kept.min()), int(kept.max())
        if low < 0 or (self.num_classes is not None and high >= self.num_classes):
            classes = f"0..{self.num_classes - 1}" if self.num_classes is not None else ">= 0"
            raise DataError(
                f"class_pixel_counts: sample {index} has mask values from {low} to {high}; "
                f"expected class ids {classes} or ignore_index {self.ignore_index}"
            )
        return label_counts(kept, self.ignore_index, self.num_classes or 0)


def class_pixel_counts(
    dataset: Any, num_classes: int | None = None, ignore_index: int = 255, num_workers: int = 0
) -> Tensor:
    """``(N, C)`` int64: row ``i`` holds the pixels of each class in sample ``i``, ``ignore_index``
    counted nowhere, with ``num_workers`` loader processes.

    seglab's training and evaluation sets (``SegmentationDataModule.train_dataset()``,
    ``dataset(split)``), its datasets and decoded caches, and ``ConcatDataset``s of them: the whole
    samples as ``read`` gives them (from the decoded cache when there is one: fast; else decoded and
    checked once), never the transform's random crops; they know their own ``num_classes`` and
    ``ignore_index``. Any other map-style dataset whose samples are ``(image, mask)`` tuples or
    dicts with a ``mask`` (masks of any integer type, ``(H, W)`` or ``(1, H, W)``): what it returns,
    with the ``ignore_index`` given here. ``C`` is ``num_classes`` when given (a mask value beyond
    it is a ``DataError``), else the largest of the sources' ``num_classes`` and the largest class
    id found plus one."""
    tables = []
    for part in _parts(dataset):
        source = _source(part)
        if source is not None:
            counts: Dataset = _SourceCounts(source, source.num_classes)
            width = source.num_classes
        else:
            counts = _SampleCounts(part, num_classes, ignore_index)
            width = num_classes or 0
        rows = list(DataLoader(counts, batch_size=None, num_workers=num_workers))
        tables.append((rows, width))
    width = max([w for _, w in tables] + [len(r) for rows, _ in tables for r in rows], default=0)
    if num_classes is not None:
        if width > num_classes:
            raise DataError(
                f"class_pixel_counts: the dataset has {width} classes, more than num_classes="
                f"{num_classes}"
            )
        width = num_classes
    padded = [torch.nn.functional.pad(r, (0, width - len(r))) for rows, _ in tables for r in rows]
    return torch.stack(padded) if padded else torch.zeros(0, width, dtype=torch.long)


class _BandSums(Dataset):
    """Per sample: labelled pixels, and per band the sum and sum of squares of ``value / 255``
    over them (float64)."""

    def __init__(self, source: Any, ignore_index: int) -> None:
        self.source = source
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, str, str]:
        image, mask, name = self.source.read(index)
        kept = (mask != self.ignore_index).reshape(-1)
        x = image.reshape(image.shape[0], -1)[:, kept].to(torch.float64) / 255
        dtype = str(image.dtype).removeprefix("torch.")
        return torch.tensor(int(kept.sum())), x.sum(1), (x * x).sum(1), name, dtype


def band_statistics(
    dataset: Any, num_workers: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band ``mean`` and ``std`` (population) of ``value / 255`` over every labelled pixel
    (``mask != ignore_index``: nodata became ``ignore_index``) of the samples of a seglab source
    (a dataset, its decoded cache, or a ``ConcatDataset`` of them), as ``read`` gives them: what
    ``data.mean``/``data.std`` take (``seglab.data.normalize``'s scaling rule). Samples whose
    band count or type differ from the first one's are a ``DataError`` naming each."""
    pixels, total, squares = 0, None, None
    first: tuple[int, str, str] | None = None
    problems = []
    for part in _parts(dataset):
        source = _source(part) or part
        rows = DataLoader(
            _BandSums(source, source.ignore_index), batch_size=None, num_workers=num_workers
        )
        for count, sums, sq, name, dtype in rows:
            if first is None:
                first = (len(sums), dtype, name)
            elif (len(sums), dtype) != first[:2]:
                problems.append(
                    f"{name}: image has {len(sums)} {dtype} bands but {first[2]} has "
                    f"{first[0]} {first[1]} bands: every image needs the same bands"
                )
                continue
            pixels += int(count)
            total = sums if total is None else total + sums
            squares = sq if squares is None else squares + sq
    if problems:
        raise DataError(*problems)
    if not pixels:
        raise DataError("band statistics: the training samples have no labelled pixels")
    mean = total / pixels
    std = (squares / pixels - mean * mean).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
