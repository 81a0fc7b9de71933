"""The default class colours, shared by datasets (VOC's own colours), prediction files and image
logs."""

from __future__ import annotations

import numpy as np


def default_palette(num_classes: int = 256) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours, the same on every run: PASCAL VOC's colour map, where the
    bits of the class id are spread over the high bits of R, G and B (class 0 black, then
    well-separated colours)."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        value, shift = index, 7
        while value:
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette
