"""Large images read a window at a time, and predictions written a window at a time.

Readers (``open_source``) give ``uint8 (bands, h, w)`` windows and, where the file says which
pixels hold no data, a validity mask:

* georeferenced rasters (GeoTIFF, or any raster GDAL reads) through rasterio's windowed reads
  (``pip install 'seglab[geo]'``): the CRS, transform and nodata travel to the output; nodata is
  GDAL's dataset mask (the nodata value, an internal mask or an alpha band);
* TIFF / BigTIFF without georeference through tifffile: only the strips or tiles a window touches
  are read and decoded;
* any other image (PNG, JPEG ...) is decoded whole as today (``seglab.data.io.read_image``, 3 bytes
  a pixel) and windows are slices of it.

Only 8-bit images are read; anything else is refused with the file named (the 0-255 scale is what
``seglab.data.normalize`` assumes). A window that cannot be read (a truncated or corrupt file)
raises ``DataError`` naming the file and the window.

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
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seglab.data.io import read_image
from seglab.errors import ConfigError, DataError

TIFF_SUFFIXES = (".tif", ".tiff")
BIGTIFF_ABOVE = 2**32 - 2**25  # bytes: classic TIFF offsets are 32 bits
GDAL_CACHE_MB = 64  # GDAL's block cache while a raster is read window by window


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class WindowSource(Protocol):
    """An image read a window at a time. ``read`` and ``valid`` take the window's rows ``[r0, r1)``
    and columns ``[c0, c1)``, inside the image."""

    path: Path
    height: int
    width: int
    bands: int
    georeferenced: bool
    has_nodata: bool

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray: ...

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None: ...

    def close(self) -> None: ...


def window_error(path: Path, r0: int, r1: int, c0: int, c1: int, reason: object) -> DataError:
    return DataError(
        f"{path}: cannot read the window rows {r0}-{r1}, columns {c0}-{c1} (corrupt or truncated "
        f"file?): {reason}"
    )


def not_uint8(path: Path, dtype: object) -> DataError:
    return DataError(
        f"{path}: pixel type {dtype}; streamed prediction reads 8-bit (uint8) images only: convert "
        "it (e.g. gdal_translate -ot Byte -scale) to the 0-255 range the model was trained on"
    )


class RasterioSource:
    """A raster read through GDAL (rasterio), window by window."""

    def __init__(self, path: Path) -> None:
        import rasterio
        from rasterio.enums import MaskFlags

        self.path = path
        # GDAL's block cache defaults to 5% of the RAM and fills as windows are read: bounded
        # here, so that memory does not grow with the part of the image read so far.
        self.env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        self.env.__enter__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: georeferenced says it
            try:
                self.dataset = rasterio.open(path)
            except rasterio.errors.RasterioIOError as e:
                self.env.__exit__(None, None, None)
                raise DataError(f"{path}: cannot open the raster: {e}") from None
        ds = self.dataset
        if any(np.dtype(d) != np.uint8 for d in ds.dtypes):
            self.close()
            raise not_uint8(path, ",".join(sorted(set(ds.dtypes))))
        self.height, self.width, self.bands = ds.height, ds.width, ds.count
        self.georeferenced = ds.crs is not None or not ds.transform.is_identity or bool(ds.gcps[0])
        self.has_nodata = ds.nodata is not None or any(
            MaskFlags.all_valid not in flags for flags in ds.mask_flag_enums
        )

    def _window(self, r0: int, r1: int, c0: int, c1: int) -> Any:
        from rasterio.windows import Window

        return Window(c0, r0, c1 - c0, r1 - r0)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        try:
            return self.dataset.read(window=self._window(r0, r1, c0, c1))
        except Exception as e:  # RasterioIOError and GDAL's CPLE_* errors of a damaged block
            raise window_error(self.path, r0, r1, c0, c1, e) from None

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        if not self.has_nodata:
            return None
        try:
            return self.dataset.dataset_mask(window=self._window(r0, r1, c0, c1)) > 0
        except Exception as e:
            raise window_error(self.path, r0, r1, c0, c1, e) from None

    def close(self) -> None:
        self.dataset.close()
        self.env.__exit__(None, None, None)


class TiffSource:
    """A TIFF / BigTIFF without georeference read with tifffile: only the strips or tiles a
    window touches are read and decoded."""

    georeferenced = False
    has_nodata = False

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        try:
            self.tif = tifffile.TiffFile(path)
            page = self.tif.pages.first
        except Exception as e:
            raise DataError(f"{path}: cannot open the TIFF file: {e}") from None
        self.page = page
        if page.dtype != np.uint8:
            self.tif.close()
            raise not_uint8(path, page.dtype)
        separate, depth, self.height, self.width, contig = page.shaped
        if depth != 1:
            self.tif.close()
            raise DataError(
                f"{path}: a volume (depth {depth}); streamed prediction reads 2-D images"
            )
        self.bands = separate * contig
        if page.is_tiled:
            self.segment = (page.tilelength, page.tilewidth)
        else:
            self.segment = (page.rowsperstrip or self.height, self.width)
        self.grid = (
            math.ceil(self.height / self.segment[0]),
            math.ceil(self.width / self.segment[1]),
        )

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        page, (sl, sw), (ny, nx) = self.page, self.segment, self.grid
        separate = page.shaped[0]
        out = np.zeros((separate, r1 - r0, c1 - c0, page.shaped[4]), np.uint8)
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
        # (separate, h, w, contig) -> (bands, h, w)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2).reshape(self.bands, r1 - r0, c1 - c0))

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        return None

    def close(self) -> None:
        self.tif.close()


class ArraySource:
    """Any other image, decoded whole as today (``read_image``: 8-bit RGB); windows are slices."""

    georeferenced = False
    has_nodata = False

    def __init__(self, path: Path, exif_orientation: Any = "refuse") -> None:
        self.path = path
        self.image = read_image(path, exif_orientation).numpy()
        self.bands, self.height, self.width = self.image.shape

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.image[:, r0:r1, c0:c1]

    def valid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        return None

    def close(self) -> None:
        self.image = np.empty((0, 0, 0), np.uint8)


def open_source(path: str | Path, exif_orientation: Any = "refuse") -> WindowSource:
    """The reader for ``path``: rasterio for georeferenced rasters, tifffile for other TIFFs,
    ``read_image`` for everything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    if path.suffix.lower() in TIFF_SUFFIXES:
        if have("rasterio"):
            source = RasterioSource(path)
            if source.georeferenced or source.has_nodata or not have("tifffile"):
                return source
            source.close()
        if have("tifffile"):
            return TiffSource(path)
        raise ConfigError(
            f"{path}: reading TIFF files window by window needs rasterio or tifffile; "
            "pip install 'seglab[geo]'"
        )
    return ArraySource(path, exif_orientation)


def image_size(path: str | Path) -> tuple[int, int, bool]:
    """``(height, width, georeferenced)`` from the file's header, without decoding pixels."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and (have("rasterio") or have("tifffile")):
        if have("rasterio"):
            source: Any = RasterioSource(path)
        else:
            source = TiffSource(path)
        try:
            return source.height, source.width, source.georeferenced
        finally:
            source.close()
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
