"""The batch formats seglab accepts, from its own data modules and from anyone else's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor


def unpack_batch(batch: Any) -> tuple[Tensor, Tensor | None, list[str] | None]:
    """``(images, masks, names)`` of a batch: a dict with ``image`` (and optionally ``mask`` and
    ``name``) keys, an ``(image, mask)`` sequence, or a bare image tensor. Masks may be
    ``(N, H, W)`` or ``(N, 1, H, W)`` of any integer type; they come back ``(N, H, W)`` int64."""
    names = None
    if isinstance(batch, Mapping):
        image, mask, names = batch["image"], batch.get("mask"), batch.get("name")
    elif isinstance(batch, Sequence) and not isinstance(batch, str):
        image, mask = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        image, mask = batch, None
    if mask is not None:
        if mask.ndim == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        mask = mask.long()
    return image, mask, (list(names) if names is not None else None)
