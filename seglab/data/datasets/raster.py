"""Large geo-referenced rasters: image and mask rasters of any size, read by windows.

Default layout (directory templates configurable, ``{split}`` replaced; pairs matched by stem, as
``FolderDataModule`` does)::

    root/train/images/tile1.tif   root/train/masks/tile1.tif
    root/val/images/...           root/val/masks/...

Images are rasters of any GDAL format with any number of bands and numeric type
(``seglab.data.rasters``: ``uint8`` as stored, other types as ``float32`` raw values; an alpha
band is dropped); masks are single-band integer rasters on the same pixel grid. Nothing decodes a
whole raster:

* training: each raster is cut into cells of the source extent one crop can cover
  (``crop_size / min(augment.scale_range)``); a training sample is the region around one cell (the
  cell and half a cell on each side, clipped to the raster), and the training transform takes a
  random ``crop_size`` crop of it (random scale, rare-class centring, augmentation as for any
  dataset). Crops therefore start anywhere in the raster, uniformly; rare-class sampling
  (``data.rare_class_sampling``) weighs the regions by their class pixels, and the decoded cache
  (``data.cache_dir``) stores the regions.
* validation and test: a grid of ``eval_window`` windows covers each raster once without overlap;
  windows at the right and bottom edges are padded to the full window (image 0, mask
  ``ignore_index``), so every labelled pixel is counted exactly once. The decoded cache stores
  these windows.

Pixels that are nodata (or transparent) in the image, or nodata in the mask, become
``ignore_index``. ``label_map`` maps stored mask values to class ids (e.g. Inria's 0/255 to 0/1).
Each split is checked before use, every problem naming its files: an image and its mask of
different size, CRS, resolution or transform; images with different bands or types; masks with
more than one band or a floating-point type.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from seglab.data.cache import open_cache
from seglab.data.datamodule import SegmentationDataModule, Split, class_names_for
from seglab.data.datasets.base import SampleSource, SegmentationDataset
from seglab.data.datasets.folder import match_files
from seglab.data.rasters import (
    IMAGE_DTYPES,
    MASK_DTYPES,
    RasterCache,
    RasterInfo,
    Window,
    data_bands,
    georeference_problems,
    grid_windows,
    image_tensor,
    mask_tensor,
    open_raster,
    raster_info,
    read_window,
)
from seglab.errors import ConfigError, DataError


def inspect_pairs(
    pairs: list[tuple[Path, Path]],
) -> tuple[list[tuple[RasterInfo, RasterInfo]], list[int], list[str]]:
    """Each pair's ``(image, mask)`` ``RasterInfo`` (headers only), the image bands holding data
    (alpha dropped) and every problem found, naming the files: georeference mismatches
    (``georeference_problems``), images whose bands or types differ from the first image's, masks
    with several bands or a non-integer type."""
    infos, problems = [], []
    bands: list[int] = []
    first: tuple[str, int, tuple[str, ...]] | None = None
    for image_path, mask_path in pairs:
        try:
            with open_raster(image_path) as src:
                image, image_bands = raster_info(src), data_bands(src)
            with open_raster(mask_path) as src:
                mask = raster_info(src)
        except DataError as e:
            problems += e.problems
            continue
        layout = (len(image_bands), tuple(image.dtypes[b - 1] for b in image_bands))
        if first is None:
            first, bands = (image.path, *layout), image_bands
        elif layout != first[1:]:
            problems.append(
                f"{image.path}: image has {layout[0]} bands of type {'/'.join(set(layout[1]))} "
                f"but {first[0]} has {first[1]} bands of type {'/'.join(set(first[2]))}: every "
                "image needs the same bands"
            )
        if any(d not in IMAGE_DTYPES for d in layout[1]):
            problems.append(f"{image.path}: image bands of type {layout[1]} are not supported")
        if mask.count != 1:
            problems.append(f"{mask.path}: mask has {mask.count} bands; masks have one")
        if mask.dtypes[0] not in MASK_DTYPES:
            problems.append(
                f"{mask.path}: mask has pixel type {mask.dtypes[0]}; masks must hold integer "
                "class ids"
            )
        problems += georeference_problems(image, mask)
        infos.append((image, mask))
    return infos, bands, problems


class RasterWindows(SegmentationDataset):
    """Samples that are windows of (image, mask) raster pairs: ``windows`` holds
    ``(pair index, Window)``; windows smaller than ``pad_to`` are padded to it (image 0, mask
    ``ignore_index``). Each process opens its own raster handles (``RasterCache``)."""

    def __init__(
        self,
        pairs: list[tuple[Path, Path]],
        windows: list[tuple[int, Window]],
        num_classes: int,
        bands: list[int] | None = None,
        pad_to: tuple[int, int] | None = None,
        label_map: dict[int, int] | None = None,
        valid_range: list[tuple[float, float]] | None = None,
        problems: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self.problems = list(problems or [])
        self.pairs = pairs
        self.windows = windows
        self.bands = bands
        self.pad_to = pad_to
        self.label_map = dict(label_map or {})
        self.valid_range = valid_range
        self.rasters = RasterCache()

    def __len__(self) -> int:
        return len(self.windows)

    def image_file(self, index: int) -> Path:
        return self.pairs[self.windows[index][0]][0]

    def mask_file(self, index: int) -> Path:
        return self.pairs[self.windows[index][0]][1]

    def source_files(self, index: int) -> list[Path]:
        return list(self.pairs[self.windows[index][0]])

    def cache_settings(self) -> dict[str, Any]:
        return {
            "windows": [(k, w.row, w.col, w.height, w.width) for k, w in self.windows],
            "bands": self.bands,
            "pad_to": self.pad_to,
            "label_map": sorted(self.label_map.items()),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
        }

    def window(self, index: int) -> Window:
        return self.windows[index][1]

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        k, window = self.windows[index]
        image_path, mask_path = self.pairs[k]
        image, valid = read_window(self.rasters.get(image_path), window, self.bands)
        stored, mask_valid = read_window(self.rasters.get(mask_path), window, [1])
        labels = stored[0]
        if self.label_map and labels.dtype.kind in "iu":
            mapped = labels.astype(np.int64)
            for value, class_id in self.label_map.items():
                mapped[labels == value] = class_id
            labels = mapped
        mask = mask_tensor(labels, valid & mask_valid, self.ignore_index, mask_path)
        pixels = image_tensor(image, valid)
        if self.pad_to is not None and tuple(pixels.shape[-2:]) != self.pad_to:
            h, w = pixels.shape[-2:]
            padded = pixels.new_zeros((pixels.shape[0], *self.pad_to))
            padded[:, :h, :w] = pixels
            full = mask.new_full(self.pad_to, self.ignore_index)
            full[:h, :w] = mask
            pixels, mask = padded, full
        return pixels, mask, f"{image_path}@{window.row},{window.col}"

    def value_problems(self, image: Tensor, mask: Tensor) -> list[tuple[int, float, float]]:
        """``(band, low, high)`` of each band whose labelled pixels (nodata is ``ignore_index``)
        leave ``valid_range`` in this sample, for ``seglab check-data``."""
        if not self.valid_range:
            return []
        kept = mask != self.ignore_index
        if not bool(kept.any()):
            return []
        found = []
        for b, (low, high) in enumerate(self.valid_range[: image.shape[0]]):
            values = image[b][kept]
            lo, hi = float(values.min()), float(values.max())
            if lo < low or hi > high or math.isnan(lo) or math.isnan(hi):
                found.append((b, lo, hi))
        return found


class RasterDataModule(SegmentationDataModule):
    """Image and mask rasters of any size (GeoTIFF or any GDAL format), read by windows: random
    training crops, a grid of windows for validation and test (``seglab.data.datasets.raster``;
    needs rasterio, ``pip install 'seglab[geo]'``).

    Args:
        root: dataset directory.
        num_classes: number of classes.
        class_names: optional names, one per class.
        image_dir, mask_dir: image and mask directories under ``root``; ``{split}`` becomes
            train/val/test. Pairs are matched by file stem.
        label_map: stored mask value -> class id (values not listed are kept).
        eval_window: validation/test window height and width (default: ``crop_size``); windows at
            the edges are padded to it with ``ignore_index``.
        valid_range: per band ``[low, high]`` of valid raw values; ``seglab check-data`` reports
            every image whose labelled pixels leave it.
        **kwargs: the shared data settings of ``SegmentationDataModule``. Images that are not
            3-band ``uint8`` need ``mean``/``std`` from ``seglab stats``.
    """

    def __init__(
        self,
        root: str,
        num_classes: int,
        class_names: list[str] | None = None,
        image_dir: str = "{split}/images",
        mask_dir: str = "{split}/masks",
        label_map: dict[int, int] | None = None,
        eval_window: int | tuple[int, int] | None = None,
        valid_range: list[tuple[float, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.num_classes = num_classes
        self.class_names = class_names_for(num_classes, class_names)
        self.image_dir, self.mask_dir = image_dir, mask_dir
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        window = eval_window if eval_window is not None else self.crop_size
        self.eval_window = (window, window) if isinstance(window, int) else tuple(window)
        if len(self.eval_window) != 2 or min(self.eval_window) < 1:
            raise ConfigError(f"data.eval_window must be a positive int or [h, w], got {window}")
        self.valid_range = [tuple(r) for r in valid_range] if valid_range else None
        self._training_sources: dict[Split, SampleSource] = {}

    def download_data(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"data.root: {self.root} is not a directory")

    def raster_pairs(self, split: Split) -> tuple[list[tuple[Path, Path]], list[str]]:
        """The split's ``(image, mask)`` raster files and the problems of its listing (overridden
        by datasets with their own layout)."""
        image_dir = self.root / self.image_dir.format(split=split)
        mask_dir = self.root / self.mask_dir.format(split=split)
        pairs, problems = match_files(image_dir, mask_dir)
        if not pairs and not problems:
            problems = [f"the {split} split is empty: no rasters in {image_dir}"]
        return pairs, problems

    def training_region(self) -> tuple[int, int]:
        """The source extent one training crop can cover: ``crop_size / min(scale_range)``."""
        low = self.augment.scale_range[0]
        return tuple(math.ceil(c / low) for c in self.crop_size)

    def make_dataset(self, split: Split, training: bool = False) -> RasterWindows:
        """The split's windows: with ``training``, the regions around the cells training crops
        from; else the evaluation grid."""
        pairs, problems = self.raster_pairs(split)
        infos, bands, found = inspect_pairs(pairs)
        problems = problems + found
        windows: list[tuple[int, Window]] = []
        if not problems:
            for k, (image, _) in enumerate(infos):
                if training:
                    windows += [(k, w) for w in _regions(image, self.training_region())]
                else:
                    grid = grid_windows(image.height, image.width, self.eval_window)
                    windows += [(k, w) for w in grid]
        return RasterWindows(
            pairs,
            windows,
            self.num_classes,
            bands=bands or None,
            pad_to=None if training else self.eval_window,
            label_map=self.label_map,
            valid_range=self.valid_range,
            problems=problems,
            ignore_index=self.ignore_index,
        )

    def training_source(self, split: Split) -> SampleSource:
        """The regions training crops from (``make_dataset(split, training=True)``), checked, in
        the decoded cache with ``cache_dir``."""
        if split not in self._training_sources:
            self._download_once()
            dataset = self.make_dataset(split, training=True)
            if dataset.problems:
                raise DataError(*dataset.problems)
            if self.cache_dir is not None:
                source: SampleSource = open_cache(dataset, self.cache_dir, f"{split}-regions")
            else:
                source = dataset
            self._training_sources[split] = source
        return self._training_sources[split]

    def prepare_data(self) -> None:
        super().prepare_data()
        fn = self.trainer.state.fn if self.trainer is not None else None
        if self.cache_dir is not None and (fn is None or fn.value == "fit"):
            for split in self.train_splits:
                self.training_source(split)


def _regions(image: RasterInfo, region: tuple[int, int]) -> list[Window]:
    """One training region per cell of ``region`` size: the cell and half a cell on each side,
    clipped to the raster."""
    rh, rw = region
    out = []
    for cell in grid_windows(image.height, image.width, region):
        top, left = max(0, cell.row - rh // 2), max(0, cell.col - rw // 2)
        bottom = min(image.height, cell.row + cell.height + rh // 2)
        right = min(image.width, cell.col + cell.width + rw // 2)
        out.append(Window(top, left, bottom - top, right - left))
    return out
