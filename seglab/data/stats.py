"""Class statistics of a split: how many pixels of each class every sample holds.

``class_pixel_counts`` gives the ``(N, num_classes)`` table that rare-class sampling
(``seglab.data.sampling``) and class weights are computed from, e.g. median-frequency weights::

    counts = class_pixel_counts(dm.train_dataset()).sum(0)
    freq = counts / counts.sum()
    weight = freq[freq > 0].median() / freq   # inf for a class that never occurs
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from seglab.data.datasets.base import SegmentationDataset, check_sample
from seglab.errors import ConfigError


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


class _SampleCounts(Dataset):
    """Class pixel counts of each sample: from the decoded-sample cache when one is attached, else
    decoded (and checked) once."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        d = self.dataset
        if d.cache is not None:  # checked when cached
            _, mask, _ = d.cache.read(index)
        else:
            image, mask, name = d.load(index)
            check_sample(image, mask, name, d.num_classes, d.ignore_index, d.mask_file(index))
        return label_counts(mask, d.ignore_index, d.num_classes)[: d.num_classes]


def training_set(datamodule: object) -> Dataset:
    """TEMPORARY (replaced by the data-path branch): the data module's training set."""
    found = getattr(datamodule, "train_dataset", None)
    if callable(found) and not isinstance(found, Dataset):
        found = found()
    if not isinstance(found, Dataset):
        raise ConfigError(f"{type(datamodule).__name__} has no train_dataset")
    return found


def class_pixel_counts(
    dataset: Dataset, num_classes: int | None = None, ignore_index: int = 255, num_workers: int = 0
) -> Tensor:
    """``(N, num_classes)`` int64: row ``i`` holds the pixels of each class in sample ``i`` of a
    ``SegmentationDataset`` (or a ``ConcatDataset`` of them, rows in its order), ``ignore_index``
    left out. Reads the decoded-sample cache when one is attached (fast), else decodes every sample
    once, with ``num_workers`` loader processes. Transforms play no part: these are whole samples."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    tables = []
    for part in parts:
        if not isinstance(part, SegmentationDataset):
            raise TypeError(
                f"class_pixel_counts needs SegmentationDatasets, got {type(part).__name__}"
            )
        loader = DataLoader(_SampleCounts(part), batch_size=None, num_workers=num_workers)
        rows = list(loader)
        tables.append(
            torch.stack(rows) if rows else torch.zeros(0, part.num_classes, dtype=torch.long)
        )
    return torch.cat(tables)
