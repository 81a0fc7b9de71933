"""Large images read a window at a time, and predictions written a window at a time.

Readers (``open_source``) give windows of an image as ``read_image`` gives the whole image
(``seglab.data.io``: the same bands, the same types, the same invalid pixels): ``(pixels (bands, h,
w), valid (h, w) or None)``, pixels ``uint8`` as stored or ``float32`` raw values, invalid pixels 0
(``seglab.data.rasters.image_tensor``); the network sees them through ``seglab.data.normalize``
like any other image, so multi-band and 16-bit or float images work with a model trained on them.

* TIFFs that ``read_image`` reads band by band (more than 8 bits, bands beyond RGB, GeoTIFF tags:
  ``seglab.data.io.tiff_reading``), and any georeferenced raster, through
  ``seglab.data.rasters`` (rasterio's windowed reads, ``pip install 'seglab[geo]'``; alpha band
  dropped; nodata, alpha and NaN invalid): the CRS, transform and nodata travel to the output;
  without rasterio through tifffile by the same rules (``seglab.data.io.tiff_bands``);
* 8-bit grey / RGB TIFFs (with or without alpha, which is dropped) through tifffile, grey repeated
  in three bands as ``read_image`` does: only the strips or tiles a window touches are read and
  decoded;
* any other image (PNG, JPEG, palette TIFF ...) is decoded whole as today
  (``seglab.data.io.read_image_valid``) and windows are slices of it.

A window that cannot be read (a truncated or corrupt file) raises ``DataError`` naming the file and
the window.

Writers (``write_prediction``) take the finished prediction as an iterator of row bands and write a
tiled, compressed TIFF band by band: a GeoTIFF with the input's CRS, transform and a nodata value
where the input is georeferenced (rasterio; optionally copied to a Cloud-Optimized GeoTIFF at the
end: GDAL's COG driver only copies finished datasets), else a tiled TIFF / BigTIFF (tifffile). The
class-id file carries the palette as its colour table.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seglab.data.io import read_image_valid, tiff_bands, tiff_reading
from seglab.data.rasters import (
    IMAGE_DTYPES,
    Window,
    block_cache,
    data_bands,
    image_tensor,
    open_raster,
    read_valid,
    read_window,
)
from seglab.errors import ConfigError, DataError

TIFF_SUFFIXES = (".tif", ".tiff")
BIGTIFF_ABOVE = 2**32 - 2**25  # bytes: classic TIFF offsets are 32 bits
PHOTO_MODES = ("L", "LA", "RGB", "RGBA", "RGBX")  # 8-bit TIFFs tifffile reads as read_image does


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class WindowSource(Protocol):
    """An image read a window at a time. ``read`` and ``valid`` take the window's rows ``[r0, r1)``
    and columns ``[c0, c1)``, inside the image; ``dtype`` is the type of ``read``'s pixels
    (``uint8`` or ``float32``)."""

    path: Path
    height: int
    width: int
    bands: int
    dtype: np.dtype
    georeferenced: bool
    has_nodata: bool

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray | None]: ...

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None: ...

    def close(self) -> None: ...


def window_error(path: Path, r0: int, r1: int, c0: int, c1: int, reason: object) -> DataError:
    return DataError(
        f"{path}: cannot read the window rows {r0}-{r1}, columns {c0}-{c1} (corrupt or truncated "
        f"file?): {reason}"
    )


def pixel_type(path: Path, dtypes: Sequence[str]) -> np.dtype:
    """The one stored type of an image's bands; other types than ``IMAGE_DTYPES``, or bands of
    different types, are refused naming the file."""
    kinds = sorted(set(dtypes))
    if len(kinds) != 1 or kinds[0] not in IMAGE_DTYPES:
        raise DataError(
            f"{path}: pixel type {','.join(kinds)}; seglab reads images whose bands are all one of "
            f"{', '.join(IMAGE_DTYPES)}"
        )
    return np.dtype(kinds[0])


def given_type(stored: np.dtype) -> np.dtype:
    """The type sources give pixels of ``stored`` type in (``image_tensor``'s rule)."""
    return np.dtype(np.uint8) if stored == np.uint8 else np.dtype(np.float32)


class RasterioSource:
    """A raster read through GDAL (``seglab.data.rasters``), window by window: its data bands
    (alpha dropped), invalid where rasterio's masks or NaN say so."""

    def __init__(self, path: Path) -> None:
        from rasterio.enums import MaskFlags

        self.path = path
        self.env = block_cache()  # held while the raster is read: memory stays bounded
        self.env.__enter__()
        try:
            self.dataset = open_raster(path)
        except BaseException:
            self.env.__exit__(None, None, None)
            raise
        ds = self.dataset
        try:
            self.indexes = data_bands(ds)
            stored = pixel_type(path, [ds.dtypes[i - 1] for i in self.indexes])
        except BaseException:
            self.close()
            raise
        self.dtype = given_type(stored)
        self.height, self.width, self.bands = ds.height, ds.width, len(self.indexes)
        self.georeferenced = is_georeferenced(ds)
        flags = [ds.mask_flag_enums[i - 1] for i in self.indexes]
        self.has_nodata = (
            ds.nodata is not None
            or any(MaskFlags.all_valid not in f for f in flags)
            or stored.kind == "f"  # NaN
        )

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray | None]:
        image, valid = read_window(self.dataset, Window(r0, c0, r1 - r0, c1 - c0), self.indexes)
        return image_tensor(image, valid).numpy(), valid if self.has_nodata else None

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        if not self.has_nodata:
            return None
        return read_valid(self.dataset, Window(r0, c0, r1 - r0, c1 - c0), self.indexes)

    def close(self) -> None:
        self.dataset.close()
        self.env.__exit__(None, None, None)


class TiffSource:
    """A TIFF / BigTIFF read with tifffile: only the strips or tiles a window touches are read and
    decoded. ``mode``: ``"multiband"`` (every band as stored, ``seglab.data.io.tiff_bands``'s
    validity) or the 8-bit PIL mode ``read_image`` would convert (grey repeated in three bands,
    alpha dropped)."""

    georeferenced = False

    def __init__(self, path: Path, mode: str = "multiband") -> None:
        import tifffile

        self.path, self.mode = path, mode
        try:
            self.tif = tifffile.TiffFile(path)
            page = self.tif.pages.first
        except Exception as e:
            raise DataError(f"{path}: cannot open the TIFF file: {e}") from None
        self.page = page
        separate, depth, self.height, self.width, contig = page.shaped
        try:
            stored = pixel_type(path, [np.dtype(page.dtype).name])
            if depth != 1:
                raise DataError(
                    f"{path}: a volume (depth {depth}); streamed prediction reads 2-D images"
                )
        except DataError:
            self.tif.close()
            raise
        self.dtype = given_type(stored)
        self.samples = separate * contig
        extra = page.tags.get(338)
        nodata = page.tags.get(42113)
        self.extra = extra.value if extra is not None else ()
        self.nodata = None if nodata is None else str(nodata.value)
        if mode == "multiband":
            probe, _ = tiff_bands(np.zeros((self.samples, 1, 1), stored), self.extra, self.nodata)
            self.bands = probe.shape[0]
            self.has_nodata = self.nodata is not None or probe.shape[0] < self.samples
            self.has_nodata |= stored.kind == "f"
        else:
            self.bands, self.has_nodata = 3, False
        if page.is_tiled:
            self.segment = (page.tilelength, page.tilewidth)
        else:
            self.segment = (page.rowsperstrip or self.height, self.width)
        self.grid = (
            math.ceil(self.height / self.segment[0]),
            math.ceil(self.width / self.segment[1]),
        )

    def _decode(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """The stored samples of the window ``(samples, h, w)``."""
        page, (sl, sw), (ny, nx) = self.page, self.segment, self.grid
        separate = page.shaped[0]
        out = np.zeros((separate, r1 - r0, c1 - c0, page.shaped[4]), page.dtype)
        fh = self.tif.filehandle
        try:
            for s in range(separate):
                for ty in range(r0 // sl, (r1 - 1) // sl + 1):
                    for tx in range(c0 // sw, (c1 - 1) // sw + 1):
                        index = (s * ny + ty) * nx + tx
                        offset, count = page.dataoffsets[index], page.databytecounts[index]
                        if not count:
                            continue  # an empty segment: zeros
                        fh.seek(offset)
                        data = fh.read(count)
                        if len(data) != count:
                            raise ValueError(
                                f"segment {index}: file ends {count - len(data)} bytes early"
                            )
                        segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
                        segment = segment[0]  # (length, width, contig samples)
                        y, x = ty * sl, tx * sw
                        ya, yb = max(r0, y), min(r1, y + segment.shape[0], self.height)
                        xa, xb = max(c0, x), min(c1, x + segment.shape[1], self.width)
                        out[s, ya - r0 : yb - r0, xa - c0 : xb - c0] = segment[
                            ya - y : yb - y, xa - x : xb - x
                        ]
        except DataError:
            raise
        except Exception as e:  # zlib/decoder errors of damaged data, short reads
            raise window_error(self.path, r0, r1, c0, c1, e) from None
        # (separate, h, w, contig) -> (samples, h, w)
        return out.transpose(0, 3, 1, 2).reshape(self.samples, r1 - r0, c1 - c0)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray | None]:
        raw = self._decode(r0, r1, c0, c1)
        if self.mode != "multiband":  # as PIL's conversion to RGB: alpha dropped, grey repeated
            rgb = raw[:3] if self.samples >= 3 else np.repeat(raw[:1], 3, axis=0)
            return np.ascontiguousarray(rgb), None
        image, valid = tiff_bands(raw, self.extra, self.nodata)
        return image_tensor(image, valid).numpy(), valid if self.has_nodata else None

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        return self.read(r0, r1, c0, c1)[1] if self.has_nodata else None

    def close(self) -> None:
        self.tif.close()


class ArraySource:
    """Any other image, decoded whole as today (``read_image_valid``); windows are slices."""

    georeferenced = False

    def __init__(self, path: Path, exif_orientation: Any = "refuse") -> None:
        self.path = path
        image, valid = read_image_valid(path, exif_orientation)
        self.image = image.numpy()
        self._valid = None if valid is None else valid.numpy()
        self.has_nodata = self._valid is not None
        self.bands, self.height, self.width = self.image.shape
        self.dtype = self.image.dtype

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.image[:, r0:r1, c0:c1], self.valid(r0, r1, c0, c1)

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        return None if self._valid is None else self._valid[r0:r1, c0:c1]

    def close(self) -> None:
        self.image = np.empty((0, 0, 0), np.uint8)


def open_source(path: str | Path, exif_orientation: Any = "refuse") -> WindowSource:
    """The reader for ``path``, by ``read_image``'s rules (``seglab.data.io.tiff_reading``):
    rasterio for georeferenced rasters and multi-band TIFFs (tifffile without rasterio), tifffile
    for 8-bit grey/RGB TIFFs, ``read_image_valid`` for everything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    if path.suffix.lower() in TIFF_SUFFIXES:
        reading = tiff_reading(path)
        if reading == "multiband":
            if have("rasterio"):
                return RasterioSource(path)
            if have("tifffile"):
                return TiffSource(path)
            raise ConfigError(
                f"{path}: reading multi-band TIFF files needs rasterio or tifffile; "
                "pip install 'seglab[geo]'"
            )
        if reading in PHOTO_MODES and have("tifffile"):
            return TiffSource(path, reading)
    return ArraySource(path, exif_orientation)


def is_georeferenced(dataset: Any) -> bool:
    """Whether an open rasterio dataset places its pixels on the map (CRS, transform or GCPs)."""
    ds = dataset
    return ds.crs is not None or not ds.transform.is_identity or bool(ds.gcps[0])


def image_size(path: str | Path) -> tuple[int, int, bool]:
    """``(height, width, georeferenced)`` from the file's header, without decoding pixels."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and have("rasterio"):
        with open_raster(path) as ds:
            return ds.height, ds.width, is_georeferenced(ds)
    if path.suffix.lower() in TIFF_SUFFIXES and have("tifffile"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                shaped = tif.pages.first.shaped
        except Exception as e:
            raise DataError(f"{path}: cannot read the TIFF header: {e}") from None
        return shaped[2], shaped[3], False
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as e:
        raise DataError(f"{path}: cannot read the image header: {e}") from None
    return height, width, False


# --- writing ---------------------------------------------------------------------------------


@dataclass
class OutputSpec:
    """What one output file holds: ``bands`` of ``dtype``, the image's size, a nodata value (the
    class-id file of an input with nodata) and a colour table (class ids)."""

    path: Path
    height: int
    width: int
    bands: int
    dtype: np.dtype
    nodata: int | None = None
    palette: Sequence[Sequence[int]] | None = None
    georeference: dict[str, Any] = field(default_factory=dict)  # crs, transform (rasterio)


def tile_side(band_rows: int) -> int:
    """The TIFF tile side: the largest of 256, 128 ... 16 that divides ``band_rows``, so that every
    band of rows fills whole tiles."""
    return next(t for t in (256, 128, 64, 32, 16) if band_rows % t == 0)


def georeference_of(source: WindowSource) -> dict[str, Any]:
    """The CRS, transform and GCPs a rasterio source carries (empty for the others)."""
    if not isinstance(source, RasterioSource):
        return {}
    ds = source.dataset
    return {"crs": ds.crs, "transform": ds.transform}


def write_prediction(
    spec: OutputSpec, bands: Iterable[np.ndarray], band_rows: int, cog: bool = False
) -> Path:
    """Writes ``spec.path`` from the row bands ``bands`` (each ``(spec.bands, rows, width)``, in
    order, ``band_rows`` rows but the last) without holding more than one band: a tiled, compressed
    GeoTIFF where ``spec.georeference`` is given, else a tiled TIFF (BigTIFF when large)."""
    if spec.georeference:
        return _write_geotiff(spec, bands, band_rows, cog)
    if cog:
        raise ConfigError(
            f"--cog: {spec.path} has no georeference to keep; Cloud-Optimized GeoTIFFs are written "
            "for georeferenced inputs only"
        )
    return _write_tiff(spec, bands, band_rows)


def _colormap(palette: Sequence[Sequence[int]], nodata: int | None) -> dict[int, tuple[int, ...]]:
    colors = {i: (*map(int, c[:3]), 255) for i, c in enumerate(palette[:256])}
    if nodata is not None and nodata < 256:
        colors[nodata] = (0, 0, 0, 0)
    return colors


def _write_geotiff(
    spec: OutputSpec, bands: Iterable[np.ndarray], band_rows: int, cog: bool
) -> Path:
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    if spec.dtype == np.float16:
        raise ConfigError(
            f"--probabilities_dtype float16: GDAL {rasterio.__gdal_version__} does not write "
            f"float16 GeoTIFFs ({spec.path}); use uint8"
        )
    side = tile_side(band_rows)
    size = spec.height * spec.width * spec.bands * spec.dtype.itemsize
    profile = {
        "driver": "GTiff",
        "height": spec.height,
        "width": spec.width,
        "count": spec.bands,
        "dtype": spec.dtype.name,
        "nodata": spec.nodata,
        "tiled": True,
        "blockxsize": side,
        "blockysize": side,
        "compress": "deflate",
        "predictor": 2 if spec.bands > 1 else 1,
        "BIGTIFF": "YES" if size > BIGTIFF_ABOVE else "IF_SAFER",
        **spec.georeference,
    }
    with rasterio.open(spec.path, "w", **profile) as out:
        row = 0
        for band in bands:
            out.write(band, window=Window(0, row, spec.width, band.shape[1]))
            row += band.shape[1]
        if spec.palette is not None and spec.bands == 1:
            out.write_colormap(1, _colormap(spec.palette, spec.nodata))
    if cog:
        tmp = spec.path.with_name(spec.path.name + ".cog")
        rasterio.shutil.copy(spec.path, tmp, driver="COG", compress="deflate", BIGTIFF="IF_SAFER")
        os.replace(tmp, spec.path)
    return spec.path


def _tiles(bands: Iterable[np.ndarray], side: int, width: int) -> Iterator[np.ndarray]:
    """Tiles ``(side, side, samples)`` in TIFF order from row bands ``(samples, rows, width)``."""
    for band in bands:
        for y in range(0, band.shape[1], side):
            rows = band[:, y : y + side].transpose(1, 2, 0)
            for x in range(0, width, side):
                tile = rows[:, x : x + side]
                if tile.shape[:2] != (side, side):
                    tile = np.pad(
                        tile, ((0, side - tile.shape[0]), (0, side - tile.shape[1]), (0, 0))
                    )
                yield np.ascontiguousarray(tile)


def _write_tiff(spec: OutputSpec, bands: Iterable[np.ndarray], band_rows: int) -> Path:
    import tifffile

    side = tile_side(band_rows)
    size = spec.height * spec.width * spec.bands * spec.dtype.itemsize
    options: dict[str, Any] = {}
    if spec.palette is not None and spec.bands == 1 and spec.dtype == np.uint8:
        colormap = np.zeros((3, 256), np.uint16)
        for i, color in enumerate(spec.palette[:256]):
            colormap[:, i] = np.asarray(color[:3], np.uint16) * 257
        options = {"photometric": "palette", "colormap": colormap}
    elif spec.bands == 1:
        options = {"photometric": "minisblack"}
    else:
        options = {"photometric": "minisblack", "planarconfig": "contig"}
    shape = (spec.height, spec.width) if spec.bands == 1 else (spec.height, spec.width, spec.bands)
    with tifffile.TiffWriter(spec.path, bigtiff=size > BIGTIFF_ABOVE) as tif:
        tif.write(
            _tiles(bands, side, spec.width),
            shape=shape,
            dtype=spec.dtype,
            tile=(side, side),
            compression="zlib",
            **options,
        )
    return spec.path
