"""EXIF orientation: how a camera says its stored pixels must be turned to be seen upright.

A photo taken with the phone held sideways is often stored as shot and tagged "rotate 90° to
display" (orientation 6). Viewers and most annotation tools show it turned; PIL, torchvision and
OpenCV (with some flags) decode the stored pixels. A mask drawn on the displayed photo and one drawn
on the stored pixels cannot both be right, and a 180° turn or a mirror leaves the sizes equal, so
nothing else would notice. seglab therefore never guesses: ``data.exif_orientation`` says what to do
with an image whose orientation is not 1 (``refuse`` by default; ``apply``: masks were drawn on the
displayed image; ``ignore``: masks were drawn on the stored pixels), the same for training,
evaluation, prediction and ``seglab explain``.
"""

from __future__ import annotations

from typing import Literal

from PIL import ExifTags, Image
from torch import Tensor

ExifOrientation = Literal["refuse", "apply", "ignore"]

# What each EXIF orientation value asks a viewer to do with the stored pixels.
ORIENTATIONS = {
    1: "upright",
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "mirrored along the main diagonal",
    6: "rotated 90° clockwise",
    7: "mirrored along the anti-diagonal",
    8: "rotated 90° counter-clockwise",
}


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened, not yet decoded image; 1 without a valid tag.

    PNG keeps EXIF in an ``eXIf`` chunk that belongs before the pixel data; PIL decodes the whole
    image to look for one after it, so only the chunks read on opening count (cheap on every
    read)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if value in ORIENTATIONS else 1


# How viewers turn the stored pixels of each orientation: the axes reversed (rows -2, columns -1),
# then whether rows and columns are swapped (6 and 8 are the quarter turns, 5 and 7 the diagonal
# mirrors).
_TURNS = {
    1: ((), False),
    2: ((-1,), False),
    3: ((-2, -1), False),
    4: ((-2,), False),
    5: ((), True),
    6: ((-2,), True),
    7: ((-2, -1), True),
    8: ((-1,), True),
}


def apply_orientation(image: Tensor, orientation: int) -> Tensor:
    """The displayed image ``(C, H', W')`` of stored pixels ``(C, H, W)``, as viewers show it."""
    reversed_axes, transposed = _TURNS.get(orientation, ((), False))
    if reversed_axes:
        image = image.flip(reversed_axes)
    if transposed:
        image = image.transpose(-2, -1)
    return image.contiguous()
