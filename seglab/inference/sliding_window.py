"""Sliding-window inference: logits of images larger than the model should see at once.

The image is covered by tiles of ``tile_size`` placed every ``stride`` pixels; the last row and
column of tiles is moved back to end flush with the image edge, so no tile reaches past the border
and no pixel is predicted from padding (an image smaller than a tile is padded once, then cropped
back). Overlapping logits are averaged with uniform or Gaussian weights; Gaussian weights trust the
centre of a tile, where the network sees the most context, more than its edges.

Tiles run through the model ``tile_batch_size`` at a time. The sums are kept in float32 on the
image's device; when that device has no room for them (a 19-class 2048x1024 image needs 160 MB of
accumulators next to the model's activations) they are kept in host memory instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from seglab.errors import ConfigError

Forward = Callable[[Tensor], Tensor]


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair."""
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Offsets of the tiles on one axis: every ``stride`` pixels, the last flush with the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def tile_stride(
    tile_size: tuple[int, int], overlap: float, stride: int | tuple[int, int] | None
) -> tuple[int, int]:
    """The step between tiles: ``stride`` when given, else ``tile * (1 - overlap)``."""
    if stride is not None:
        return pair(stride)
    return tuple(max(1, round(t * (1.0 - overlap))) for t in tile_size)  # type: ignore[return-value]


def check_tiling(
    tile_size: int | tuple[int, int],
    overlap: float,
    stride: int | tuple[int, int] | None,
    weighting: str,
    tile_batch_size: int,
) -> None:
    """Refuses settings that cannot tile an image, naming the ``model.inference`` option."""
    if min(pair(tile_size)) < 1:
        raise ConfigError(f"model.inference.tile_size must be positive, got {tile_size}")
    if stride is not None and min(pair(stride)) < 1:
        raise ConfigError(f"model.inference.stride must be positive, got {stride}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"model.inference.overlap must be in [0, 1), got {overlap}")
    if weighting not in ("uniform", "gaussian"):
        raise ConfigError(
            f"model.inference.weighting must be uniform or gaussian, got {weighting!r}"
        )
    if tile_batch_size < 1:
        raise ConfigError(
            f"model.inference.tile_batch_size must be at least 1, got {tile_batch_size}"
        )


def gaussian_weights(tile_size: tuple[int, int], sigma_scale: float = 0.125) -> Tensor:
    """A ``(th, tw)`` Gaussian with sigma ``sigma_scale * tile`` per axis, 1 at the centre; it stays
    above ``exp(-8)`` at the edges, so every pixel keeps a positive total weight."""
    axes = []
    for t in tile_size:
        x = torch.arange(t, dtype=torch.float32) - (t - 1) / 2
        axes.append(torch.exp(-0.5 * (x / (sigma_scale * t)) ** 2))
    weights = axes[0][:, None] * axes[1][None, :]
    return weights / weights.max()


def _accumulators(
    channels: int, height: int, width: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Zeroed float32 sums of logits and weights, on ``device`` if it has room, else on the host."""
    try:
        return (
            torch.zeros(channels, height, width, dtype=torch.float32, device=device),
            torch.zeros(1, height, width, dtype=torch.float32, device=device),
        )
    except torch.OutOfMemoryError:
        warnings.warn(
            f"sliding window: no room on {device} for a {channels}x{height}x{width} float32 "
            "accumulator; accumulating in host memory",
            stacklevel=3,
        )
        cpu = torch.device("cpu")
        return (
            torch.zeros(channels, height, width, dtype=torch.float32, device=cpu),
            torch.zeros(1, height, width, dtype=torch.float32, device=cpu),
        )


@torch.no_grad()
def sliding_window(
    forward: Forward,
    image: Tensor,
    tile_size: int | tuple[int, int],
    overlap: float = 0.25,
    stride: int | tuple[int, int] | None = None,
    weighting: str = "gaussian",
    tile_batch_size: int = 4,
) -> Tensor:
    """Logits ``(N, C, H, W)`` of ``image`` ``(N, 3, H, W)`` stitched from tiles.

    Args:
        forward: the model, ``(B, 3, th, tw) -> (B, C, th, tw)``.
        image: normalized images.
        tile_size: tile height and width (an int for square tiles).
        overlap: fraction of a tile shared with its neighbour; ignored when ``stride`` is given.
        stride: step between tiles in pixels.
        weighting: ``uniform`` or ``gaussian`` averaging of overlapping logits.
        tile_batch_size: tiles per forward pass.
    """
    check_tiling(tile_size, overlap, stride, weighting, tile_batch_size)
    th, tw = pair(tile_size)
    sh, sw = tile_stride((th, tw), overlap, stride)
    h, w = image.shape[-2:]
    # An image smaller than a tile is padded to one tile (bottom/right); its logits are cropped.
    pad_h, pad_w = max(0, th - h), max(0, tw - w)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h))
    ph, pw = image.shape[-2:]
    boxes = [(y, x) for y in tile_starts(ph, th, sh) for x in tile_starts(pw, tw, sw)]
    weights = gaussian_weights((th, tw)) if weighting == "gaussian" else torch.ones(th, tw)

    outputs = []
    for sample in image:
        logits_sum: Tensor | None = None
        for first in range(0, len(boxes), tile_batch_size):
            chunk = boxes[first : first + tile_batch_size]
            tiles = torch.stack([sample[:, y : y + th, x : x + tw] for y, x in chunk])
            logits = forward(tiles)
            if logits_sum is None:
                logits_sum, weight_sum = _accumulators(logits.shape[1], ph, pw, image.device)
                weights = weights.to(logits_sum.device)
            logits = logits.to(logits_sum.device, torch.float32)
            for (y, x), tile_logits in zip(chunk, logits, strict=True):
                logits_sum[:, y : y + th, x : x + tw] += tile_logits * weights
                weight_sum[:, y : y + th, x : x + tw] += weights
        outputs.append((logits_sum / weight_sum)[:, :h, :w].to(image.device))
    return torch.stack(outputs)
