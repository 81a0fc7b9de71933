"""Class statistics of masks: how many pixels of each class they hold."""

from __future__ import annotations

import torch
from torch import Tensor


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
