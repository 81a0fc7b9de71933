"""Writers of deliberately awkward files (lossy masks, broken links, rotated photos, 16-bit and CMYK
images) for tests that put them into the real layout of ``tests.conftest.write_folder_dataset``."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageDraw

CLASS_STEP = (
    80  # sample_image: the red channel is class * CLASS_STEP, so alignment can be read back
)


def shapes_mask(h: int, w: int, values: list[int], seed: int = 0) -> np.ndarray:
    """A label map of overlapping polygons and ellipses with the given class ids (edges at every
    angle, so lossy compression and interpolation leave their traces)."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (w, h), values[0])
    draw = ImageDraw.Draw(canvas)
    for i in range(10):
        value = values[1 + i % (len(values) - 1)]
        x, y = rng.integers(0, w), rng.integers(0, h)
        rx, ry = rng.integers(w // 8, w // 3), rng.integers(h // 8, h // 3)
        if i % 2:
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=int(value))
        else:
            draw.polygon([(x - rx, y), (x, y - ry), (x + rx, y + ry // 2)], fill=int(value))
    return np.array(canvas)


def sample_image(mask: np.ndarray) -> np.ndarray:
    """An RGB image whose red channel tells the class of each pixel (``class * CLASS_STEP``)."""
    red = (mask.astype(np.int64) * CLASS_STEP).clip(0, 255)
    green = np.full_like(red, 100)
    blue = np.indices(mask.shape).sum(0) % 256
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def classes_seen(image: np.ndarray) -> np.ndarray:
    """The classes ``sample_image`` encoded, read back from an ``(H, W, 3)`` or ``(3, H, W)``
    image."""
    red = image[..., 0] if image.shape[-1] == 3 else image[0]
    return np.rint(red.astype(np.float64) / CLASS_STEP).astype(np.int64)


def save_jpeg(array: np.ndarray, path: Path, quality: int = 75, orientation: int = 1) -> Path:
    """A JPEG file (whatever the extension), optionally tagged with an EXIF orientation."""
    exif = Image.Exif()
    if orientation != 1:
        exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(array).save(path, format="JPEG", quality=quality, subsampling=0, exif=exif)
    return path


def save_png16(array: np.ndarray, path: Path) -> Path:
    """A 16-bit-per-channel RGB PNG (``(H, W, 3)`` uint16), which PIL cannot write."""
    h, w, _ = array.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def broken_link(path: Path) -> Path:
    """A symbolic link at ``path`` to a file that does not exist; returns the target."""
    target = path.parent / f"gone-{path.name}"
    path.unlink(missing_ok=True)
    os.symlink(target, path)
    return target
