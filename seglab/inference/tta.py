"""Test-time augmentation: predictions on flipped and rescaled copies of the image, averaged.

Each pass's logits are mapped back to the original frame (un-flipped, resized to the input size) and
turned into softmax probabilities before averaging: probabilities are on one scale across passes,
raw logits are not. The average is returned as log-probabilities so it can stand in for logits
everywhere (``argmax``, cross-entropy and ``softmax`` give the averaged prediction back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from seglab.errors import ConfigError

Forward = Callable[[Tensor], Tensor]


def tta_views(hflip: bool, vflip: bool) -> list[tuple[int, ...]]:
    """The flips as the dims to flip: none, width (horizontal), height (vertical)."""
    return [(), *([(-1,)] if hflip else []), *([(-2,)] if vflip else [])]


def check_scales(scales: Sequence[float]) -> None:
    if not scales or any(s <= 0 for s in scales):
        raise ConfigError(f"model.inference.scales must be positive factors, got {list(scales)}")


def tta_passes(hflip: bool = False, vflip: bool = False, scales: Sequence[float] = (1.0,)) -> int:
    """Number of predictions averaged: one per scale and flip."""
    return len(scales) * len(tta_views(hflip, vflip))


@torch.no_grad()
def tta_logits(
    forward: Forward,
    image: Tensor,
    hflip: bool = False,
    vflip: bool = False,
    scales: Sequence[float] = (1.0,),
) -> Tensor:
    """Log of the softmax probabilities averaged over flips and scales, ``(N, C, H, W)``.

    Args:
        forward: logits at the input's size for any input size (whole image or sliding window).
        image: normalized images ``(N, 3, H, W)``.
        hflip, vflip: add horizontally / vertically flipped passes.
        scales: resize factors of the input; 1.0 is the original size.
    """
    check_scales(scales)
    h, w = image.shape[-2:]
    probs: Tensor | None = None
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = image if size == (h, w) else F.interpolate(image, size, mode="bilinear")
        for dims in tta_views(hflip, vflip):
            logits = forward(scaled.flip(dims) if dims else scaled)
            if dims:
                logits = logits.flip(dims)
            if size != (h, w):
                logits = F.interpolate(logits.float(), (h, w), mode="bilinear")
            p = logits.float().softmax(1)
            probs = p if probs is None else probs + p
    probs = probs / tta_passes(hflip, vflip, scales)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
