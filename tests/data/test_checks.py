"""The photo-like mask measure: drawn label maps stay far below the warning threshold, masks that
went through lossy compression or interpolation far above it."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.data.checks import PHOTO_LIKE_SHARE, interpolated_boundary_share
from tests.data.awkward_files import shapes_mask


def share(mask: np.ndarray) -> float:
    return interpolated_boundary_share(torch.from_numpy(mask), ignore_index=255)[1]


def through_jpeg(mask: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="JPEG", quality=quality)
    return np.array(Image.open(buffer))


def bilinear_half(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    return np.array(Image.fromarray(mask).resize((w // 2, h // 2), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("seed", range(4))
def test_drawn_masks_are_not_photo_like_even_with_thin_lines_and_ignored_borders(seed):
    mask = shapes_mask(128, 160, [0, 3, 7, 12, 19], seed=seed)
    mask[60, :] = 5  # a one-pixel line whose id lies between its neighbours'
    mask[:, 90] = 9
    mask[:4] = 255
    assert share(mask) < PHOTO_LIKE_SHARE / 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("damage", ["jpeg75", "jpeg95", "bilinear"])
def test_lossy_or_interpolated_multi_class_masks_are_photo_like(seed, damage):
    mask = shapes_mask(128, 160, [0, 4, 8, 12, 16], seed=seed)
    damaged = {
        "jpeg75": lambda m: through_jpeg(m, 75),
        "jpeg95": lambda m: through_jpeg(m, 95),
        "bilinear": bilinear_half,
    }[damage](mask)
    count, fraction = interpolated_boundary_share(torch.from_numpy(damaged), ignore_index=255)
    assert fraction > 5 * PHOTO_LIKE_SHARE and count >= 16


def test_ignored_pixels_take_no_part():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    mask[:, 3] = 2  # between 0 and 255, but 255 is ignore_index
    assert interpolated_boundary_share(torch.from_numpy(mask), ignore_index=255) == (0, 0.0)
