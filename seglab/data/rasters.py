"""Windowed reads of large multi-band rasters (GeoTIFF or any GDAL format) through rasterio.

The small API that training (``seglab.data.datasets.raster``), ``seglab check-data`` and streamed
prediction share::

    with open_raster(path) as src:                      # errors name the file
        info = raster_info(src)                         # size, bands, dtype, CRS, transform, nodata
        image, valid = read_window(src, Window(row, col, height, width))
        # image: numpy (C, h, w) in the file's type; valid: bool (h, w), False at nodata

Only the window's pixels are decoded (of a tiled GeoTIFF: the tiles it touches), never the whole
file. A pixel is *valid* when every band is valid by rasterio's own masks (``read_masks``: the
nodata value, an internal mask band or an alpha band) and, for floating-point bands, not NaN.
``image_tensor`` turns the array into what seglab's data path carries: ``uint8`` as stored, every
other type as ``float32`` raw values (``seglab.data.normalize`` says how they are scaled), invalid
pixels set to 0.

rasterio is an optional dependency (``pip install 'seglab[geo]'``): without it these functions
raise a ``ConfigError`` saying so. A rasterio dataset handle is not safe to share between threads
or processes: each DataLoader worker opens its own (``RasterCache``).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seglab.errors import ConfigError, DataError

# Numeric types of image bands seglab reads; masks must hold integers.
IMAGE_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
MASK_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32")
GDAL_CACHE_MB = 64  # GDAL's block cache while a raster is read window by window (block_cache)


def have_rasterio() -> bool:
    """Whether rasterio (the ``geo`` extra) is installed."""
    return importlib.util.find_spec("rasterio") is not None


def _rasterio() -> Any:
    if not have_rasterio():
        raise ConfigError(
            "reading rasters needs rasterio, which is not installed: pip install 'seglab[geo]'"
        )
    import rasterio

    return rasterio


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: top row, left column, height and width."""

    row: int
    col: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"rows {self.row}:{self.row + self.height}, cols {self.col}:{self.col + self.width}"


@dataclass(frozen=True)
class RasterInfo:
    """What the checks compare between files: size, bands, types and georeference."""

    path: str
    height: int
    width: int
    count: int
    dtypes: tuple[str, ...]
    crs: str | None
    transform: tuple[float, ...]
    nodata: float | None

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel width and height in CRS units (from the affine transform)."""
        a, b, _, d, e, _ = self.transform[:6]
        return (float(np.hypot(a, d)), float(np.hypot(b, e)))


def open_raster(path: str | Path) -> Any:
    """A rasterio dataset opened for reading (use it as a context manager); a missing or
    undecodable file is a ``DataError`` naming it."""
    rasterio = _rasterio()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: raster file not found")
    try:
        with warnings.catch_warnings():  # a plain TIFF has no georeference: nothing to warn about
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise DataError(f"{path}: cannot open raster: {e}") from None


def raster_info(src: Any) -> RasterInfo:
    """The ``RasterInfo`` of an open rasterio dataset."""
    crs = src.crs.to_string() if src.crs is not None else None
    return RasterInfo(
        path=str(src.name),
        height=int(src.height),
        width=int(src.width),
        count=int(src.count),
        dtypes=tuple(src.dtypes),
        crs=crs or None,
        transform=tuple(float(v) for v in tuple(src.transform)[:6]),
        nodata=None if src.nodata is None else float(src.nodata),
    )


def read_window(
    src: Any, window: Window | None = None, bands: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(image (C, h, w) in the file's type, valid bool (h, w))`` of ``window`` (the whole
    raster when ``None``), bands ``bands`` (1-based, default all). Only that window is decoded.
    A window reaching outside the raster, or one that cannot be decoded (a corrupt or truncated
    file), is a ``DataError`` naming the file and the window."""
    window, rw = _checked_window(src, window)
    indexes = bands or list(range(1, src.count + 1))
    try:
        image = src.read(indexes, window=rw)
    except Exception as e:  # RasterioIOError, and GDAL's CPLE_* errors of a damaged block
        raise _window_error(src, window, e) from None
    return image, read_valid(src, window, indexes, image)


def read_valid(
    src: Any, window: Window | None, bands: list[int], image: np.ndarray | None = None
) -> np.ndarray:
    """Which pixels of ``window`` hold data, bool ``(h, w)``: valid in every band of ``bands`` by
    rasterio's masks (nodata value, internal mask, alpha band) and, for floating-point bands, not
    NaN (``image``: the window's pixels when already read; read here if needed)."""
    window, rw = _checked_window(src, window)
    try:
        valid = src.read_masks(bands, window=rw).min(axis=0) > 0
        if any(np.dtype(src.dtypes[b - 1]).kind == "f" for b in bands):
            if image is None:
                image = src.read(bands, window=rw)
            valid &= ~np.isnan(image).any(axis=0)
    except Exception as e:  # as in read_window
        raise _window_error(src, window, e) from None
    return valid


def _checked_window(src: Any, window: Window | None) -> tuple[Window, Any]:
    """``window`` (the whole raster for ``None``) and rasterio's window of it; a window reaching
    outside the raster is a ``DataError``."""
    rasterio = _rasterio()
    if window is None:
        window = Window(0, 0, src.height, src.width)
    if (
        window.row < 0
        or window.col < 0
        or window.height < 1
        or window.width < 1
        or window.row + window.height > src.height
        or window.col + window.width > src.width
    ):
        raise DataError(
            f"{src.name}: window {window} is outside the raster ({src.height}x{src.width} HxW)"
        )
    return window, rasterio.windows.Window(window.col, window.row, window.width, window.height)


def _window_error(src: Any, window: Window, error: Exception) -> DataError:
    return DataError(f"{src.name}: cannot read {window} (corrupt or truncated file?): {error}")


def block_cache(megabytes: int = GDAL_CACHE_MB) -> Any:
    """A rasterio environment (a context manager) that bounds GDAL's block cache. The cache
    defaults to 5% of the RAM and fills as windows are read: a long windowed read (a streamed
    prediction of a huge raster) holds one of these open so that memory does not grow with the
    part of the raster read so far."""
    return _rasterio().Env(GDAL_CACHEMAX=megabytes)


def image_tensor(image: np.ndarray, valid: np.ndarray | None = None) -> Tensor:
    """The tensor seglab's data path carries for raster pixels ``(C, H, W)``: ``uint8`` as stored,
    any other type as ``float32`` raw values; pixels where ``valid`` is False set to 0."""
    out = image if image.dtype == np.uint8 else image.astype(np.float32)
    if valid is not None and not valid.all():
        out = np.where(valid[None], out, np.zeros((), out.dtype))
    return torch.from_numpy(np.ascontiguousarray(out))


def mask_tensor(
    mask: np.ndarray, valid: np.ndarray | None, ignore_index: int, name: str | Path
) -> Tensor:
    """A single-band mask window as int64 class ids, nodata (``valid`` False) as
    ``ignore_index``; a floating-point mask is a ``DataError`` naming ``name``."""
    if mask.dtype.kind not in "iub":
        raise DataError(
            f"{name}: mask has pixel type {mask.dtype}; masks must hold integer class ids"
        )
    out = torch.from_numpy(mask.astype(np.int64))
    if valid is not None and not valid.all():
        out[torch.from_numpy(~valid)] = ignore_index
    return out


def grid_windows(height: int, width: int, size: tuple[int, int]) -> list[Window]:
    """Windows of ``size`` (height, width) tiling a ``height x width`` raster without overlap, row
    by row; the last row and column are clipped to the raster, so every pixel is in exactly one
    window."""
    wh, ww = size
    return [
        Window(r, c, min(wh, height - r), min(ww, width - c))
        for r in range(0, height, wh)
        for c in range(0, width, ww)
    ]


def georeference_problems(image: RasterInfo, mask: RasterInfo) -> list[str]:
    """One line per way the mask does not lie on the image's pixels: size, CRS, resolution,
    transform; each names both files."""
    both = f"image {image.path} and mask {mask.path}"
    problems = []
    if (image.height, image.width) != (mask.height, mask.width):
        problems.append(
            f"{both} differ in size: {image.height}x{image.width} and "
            f"{mask.height}x{mask.width} (HxW)"
        )
    if image.crs != mask.crs:
        problems.append(f"{both} differ in CRS: {image.crs} and {mask.crs}")
    if not np.allclose(image.resolution, mask.resolution, rtol=1e-9, atol=0):
        problems.append(
            f"{both} differ in resolution: {image.resolution} and {mask.resolution} (CRS units "
            "per pixel)"
        )
    elif not np.allclose(image.transform, mask.transform, rtol=1e-9, atol=1e-9):
        problems.append(
            f"{both} differ in transform (origin or rotation): {image.transform} and "
            f"{mask.transform}"
        )
    return problems


class RasterCache:
    """Open rasterio datasets of one process, by path, at most ``size`` at a time (least
    recently used closed first). Not shared between processes: a dataset sent to a DataLoader
    worker arrives without open handles (``__getstate__``) and opens its own."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._open: OrderedDict[str, Any] = OrderedDict()
        self._pid = os.getpid()

    def get(self, path: str | Path) -> Any:
        if os.getpid() != self._pid:  # a forked worker: the parent's handles are not its own
            self._open, self._pid = OrderedDict(), os.getpid()
        key = str(path)
        src = self._open.pop(key, None)
        if src is None:
            src = open_raster(key)
            while len(self._open) >= self.size:
                self._open.popitem(last=False)[1].close()
        self._open[key] = src
        return src

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def __getstate__(self) -> dict[str, Any]:
        return {"size": self.size, "_open": OrderedDict(), "_pid": -1}

    def __iter__(self) -> Iterator[str]:
        return iter(self._open)


def data_bands(src: Any) -> list[int]:
    """The 1-based bands of an open raster that hold data: all but an alpha band (whose
    transparent pixels ``read_window``'s validity already marks)."""
    rasterio = _rasterio()
    alpha = rasterio.enums.ColorInterp.alpha
    bands = [i + 1 for i, ci in enumerate(src.colorinterp) if ci != alpha]
    return bands or list(range(1, src.count + 1))


# The window reader users import (docs/guides/rasters.md); the other functions serve seglab's own
# data path and checks.
__all__ = ["RasterInfo", "Window", "open_raster", "raster_info", "read_valid", "read_window"]
