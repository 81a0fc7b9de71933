"""Decoding images and masks from disk, with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from seglab.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_TORCHVISION_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def read_image(path: str | Path) -> Tensor:
    """An RGB image as a ``uint8`` tensor ``(3, H, W)``; grey and RGBA images are converted."""
    path = Path(path)
    try:
        if path.suffix.lower() in _TORCHVISION_EXTENSIONS:
            data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
            return decode_image(data, mode=ImageReadMode.RGB)
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (RuntimeError, OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(
            f"{path}: cannot decode image (corrupt, truncated or not an image): {e}"
        ) from None


def _decode_mask(path: Path, mode: str | None = None) -> np.ndarray:
    """The mask's pixels (converted to ``mode`` if given), errors naming the file."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode) if mode else im)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(
            f"{path}: cannot decode mask (corrupt, truncated or not an image): {e}"
        ) from None


def read_mask(path: str | Path) -> Tensor:
    """A single-channel mask of class ids as an integer tensor ``(H, W)``; palette PNGs give their
    indices. Multi-channel masks are refused: colour masks need a palette mapping."""
    path = Path(path)
    array = _decode_mask(path)
    if array.ndim != 2:
        raise DataError(
            f"{path}: mask has {array.shape[-1]} channels; masks must be single-channel class ids "
            "(for colour masks give the data module a palette)"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype not in (np.uint8, np.int16, np.uint16, np.int32):
        raise DataError(f"{path}: mask has pixel type {array.dtype}; expected integer class ids")
    return torch.from_numpy(array.astype(np.int64) if array.dtype != np.uint8 else array)


def read_rgb_mask(path: str | Path) -> Tensor:
    """A colour-coded mask as a ``uint8`` tensor ``(H, W, 3)``; palette PNGs give their colours."""
    return torch.from_numpy(_decode_mask(Path(path), mode="RGB"))


def colors_to_ids(
    rgb: Tensor,
    palette: list[tuple[int, int, int]],
    name: str,
    ignore_color: tuple[int, int, int] | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Class ids ``(H, W)`` of an ``(H, W, 3)`` colour mask: colour ``palette[i]`` is class ``i``,
    ``ignore_color`` is ``ignore_index``; any other colour is an error naming it."""
    codes = (rgb[..., 0].long() << 16) | (rgb[..., 1].long() << 8) | rgb[..., 2].long()
    colors = [*palette, *([ignore_color] if ignore_color is not None else [])]
    keys = torch.tensor([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=torch.long)
    values = torch.tensor(
        list(range(len(palette))) + ([ignore_index] if ignore_color is not None else []),
        dtype=torch.long,
    )
    order = torch.argsort(keys)
    keys, values = keys[order], values[order]
    pos = torch.searchsorted(keys, codes).clamp_(max=len(keys) - 1)
    known = keys[pos] == codes
    if not known.all():
        unknown = codes[~known].unique()[:5].tolist()
        shown = ", ".join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in unknown)
        raise DataError(
            f"{name}: mask has colours not in the palette: {shown} "
            "(give every colour a class in data.palette, or set data.ignore_color)"
        )
    return values[pos]
