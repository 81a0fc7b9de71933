"""One entry point for evaluation and prediction: whole image or sliding window, with or without
TTA."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from seglab.errors import ConfigError
from seglab.inference.sliding_window import Forward, check_tiling, sliding_window
from seglab.inference.tta import check_scales, tta_logits, tta_passes


@dataclass
class Inference:
    """How validation, test and predict turn an image into logits (``model.inference.*``).

    Args:
        mode: ``whole`` runs the full image at once (padded to the output stride); ``slide`` runs
            tiles of ``tile_size`` and stitches their logits.
        tile_size: tile height and width (an int for square tiles); a multiple of the output stride
            avoids padding every tile.
        overlap: fraction of a tile shared with its neighbour (stride = tile * (1 - overlap)).
        stride: step between tiles in pixels; overrides ``overlap`` when set.
        weighting: averaging of overlapping logits; ``gaussian`` trusts tile centres more.
        tile_batch_size: tiles per forward pass.
        hflip, vflip: test-time augmentation with horizontally / vertically flipped copies.
        scales: test-time augmentation with resized copies (1.0 = original size).
        output: what ``predict`` returns per image: class ``ids``, or ``probabilities`` too.
        streaming: how ``seglab predict --output_dir`` treats an image: ``auto`` streams it
            (reads, predicts and writes it window by window with the tiles above,
            ``seglab.inference.streaming``) when it has more than ``stream_above`` pixels or is
            georeferenced; ``always`` streams every image; ``never`` keeps today's in-memory path.
        stream_above: pixels (height x width) above which ``auto`` streams an image.
        band_rows: rows a streamed prediction finishes and saves at a time (a multiple of 16): the
            unit a killed run resumes from and processes share.
    """

    mode: Literal["whole", "slide"] = "whole"
    tile_size: int | tuple[int, int] = 512
    overlap: float = 0.25
    stride: int | tuple[int, int] | None = None
    weighting: Literal["uniform", "gaussian"] = "gaussian"
    tile_batch_size: int = 4
    hflip: bool = False
    vflip: bool = False
    scales: tuple[float, ...] = (1.0,)
    output: Literal["ids", "probabilities"] = "ids"
    streaming: Literal["auto", "always", "never"] = "auto"
    stream_above: int = 4096 * 4096
    band_rows: int = 512

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ConfigError(f"model.inference.mode must be whole or slide, got {self.mode!r}")
        check_tiling(
            self.tile_size, self.overlap, self.stride, self.weighting, self.tile_batch_size
        )
        check_scales(self.scales)
        if self.streaming not in ("auto", "always", "never"):
            raise ConfigError(
                f"model.inference.streaming must be auto, always or never, got {self.streaming!r}"
            )
        if self.band_rows < 16 or self.band_rows % 16:
            raise ConfigError(
                f"model.inference.band_rows must be a positive multiple of 16, got {self.band_rows}"
            )
        if self.output not in ("ids", "probabilities"):
            raise ConfigError(
                f"model.inference.output must be ids or probabilities, got {self.output!r}"
            )

    @property
    def passes(self) -> int:
        """Predictions averaged per image by test-time augmentation."""
        return tta_passes(self.hflip, self.vflip, self.scales)


@torch.no_grad()
def predict_logits(forward: Forward, image: Tensor, settings: Inference | None = None) -> Tensor:
    """Logits ``(N, C, H, W)`` of normalized images ``(N, 3, H, W)`` of any size.

    ``forward`` must accept any input size (``SegmentationModule.forward`` pads to the stride and
    crops back). With test-time augmentation the result is the log of the averaged probabilities.
    """
    settings = settings or Inference()
    if settings.mode == "slide":
        forward = partial(
            sliding_window,
            forward,
            tile_size=settings.tile_size,
            overlap=settings.overlap,
            stride=settings.stride,
            weighting=settings.weighting,
            tile_batch_size=settings.tile_batch_size,
        )
    if settings.passes == 1 and tuple(settings.scales) == (1.0,):
        return forward(image)
    return tta_logits(forward, image, settings.hflip, settings.vflip, settings.scales)
