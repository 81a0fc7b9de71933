"""Samples/s of training-window reads: windows of a large tiled GeoTIFF against pre-cut PNG chips
of the same size, in the same run.

``raster_window``: ``seglab.data.rasters.read_window`` of a random ``CHIP x CHIP`` window (4-band
uint16 or 3-band uint8) from one tiled, deflate-compressed GeoTIFF of ``SIZE x SIZE`` pixels, the
handle kept open (as ``RasterDataModule``'s workers do); ``png_chip``: ``seglab.data.io.read_image``
of one of the same image cut beforehand into ``CHIP x CHIP`` PNG files (what users do today), a
random one per read; for uint16 data the PNG chips are uint8 RGB (PNG cannot hold 4 uint16 bands
that seglab reads), so that row compares a 4-band uint16 window against the best case of chips.
Images are smooth noise plus sensor noise, so that compression costs what it does on real
imagery. One process, one thread; repetitions interleaved, the median reported; rates per second
of CPU time (``time.process_time``).

    python bench/raster_windows.py            # SIZE 4096, CHIP 256
    python bench/raster_windows.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from seglab.data.io import read_image
from seglab.data.rasters import Window, open_raster, read_window


def smooth(rng: np.random.Generator, bands: int, size: int, scale: float) -> np.ndarray:
    """Coarse noise upsampled (nearest, then a box blur) plus fine noise: ``(bands, size, size)``
    float32 in about [0, scale]."""
    cell = 32
    coarse = rng.random((bands, size // cell + 1, size // cell + 1), dtype=np.float32)
    field = coarse.repeat(cell, 1).repeat(cell, 2)[:, :size, :size]
    for axis in (1, 2):
        field = (field + np.roll(field, 8, axis) + np.roll(field, -8, axis)) / 3
    return (field * 0.9 + rng.random((bands, size, size), dtype=np.float32) * 0.1) * scale


def write_geotiff(path: Path, array: np.ndarray) -> None:
    c, h, w = array.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=c, dtype=array.dtype.name,
        crs="EPSG:32631", transform=from_origin(0, h, 1, 1), tiled=True, blockxsize=256,
        blockysize=256, compress="deflate", photometric="minisblack",
    ) as dst:  # fmt: skip
        dst.write(array)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--chip", type=int, default=256)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.size, args.chip, args.reads, args.reps = 512, 64, 20, 1
    size, chip = args.size, args.chip
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rgb = smooth(rng, 3, size, 255).astype(np.uint8)
        multi = smooth(rng, 4, size, 10000).astype(np.uint16)
        write_geotiff(work / "rgb.tif", rgb)
        write_geotiff(work / "multi.tif", multi)
        (work / "chips").mkdir()
        chips = []
        for r in range(0, size - chip + 1, chip):
            for c in range(0, size - chip + 1, chip):
                path = work / "chips" / f"{r}_{c}.png"
                Image.fromarray(rgb[:, r : r + chip, c : c + chip].transpose(1, 2, 0)).save(path)
                chips.append(path)
        sources = {"rgb": open_raster(work / "rgb.tif"), "multi": open_raster(work / "multi.tif")}

        def windows(name: str):
            src = sources[name]
            tops = rng.integers(0, size - chip + 1, (args.reads, 2))

            def run() -> None:
                for top, left in tops.tolist():
                    read_window(src, Window(top, left, chip, chip))

            return run

        def png() -> None:
            for i in rng.integers(0, len(chips), args.reads).tolist():
                read_image(chips[i])

        cases = {
            "raster_window_uint8_rgb": windows("rgb"),
            "raster_window_uint16_4band": windows("multi"),
            "png_chip_uint8_rgb": png,
        }
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.reps):
            for name, fn in cases.items():
                start = time.process_time()
                fn()
                rates[name].append(args.reads / (time.process_time() - start))
        for src in sources.values():
            src.close()
    print(f"# {size}x{size} raster (tiled 256, deflate), {chip}x{chip} windows, one thread")
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name}: {value:.0f} samples/s")
    base = median["png_chip_uint8_rgb"]
    for name in ("raster_window_uint8_rgb", "raster_window_uint16_4band"):
        print(f"{name}_vs_png_chip: {median[name] / base:.2f} x")


if __name__ == "__main__":
    main()
