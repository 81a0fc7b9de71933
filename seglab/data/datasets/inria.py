"""Inria Aerial Image Labeling (Maggiori et al., IGARSS 2017): building footprints in 0.3 m
orthophotos, 5000x5000 RGB GeoTIFF tiles read by windows (``RasterDataModule``).

Published layout (under ``data.root``)::

    root/AerialImageDataset/train/images/austin1.tif ... vienna36.tif   180 tiles, 5 cities
    root/AerialImageDataset/train/gt/austin1.tif ...                    0 background, 255 building
    root/AerialImageDataset/test/images/bellingham1.tif ...             no public masks

Splits: the dataset's authors validate on the first five tiles of every city (``austin1-5``,
``chicago1-5``, ``kitsap1-5``, ``tyrol-w1-5``, ``vienna1-5``: 25 tiles) and train on the rest
(155). The test masks are not published: predict ``test/images`` with ``--data.predict_dir`` and
submit the masks to the benchmark's server. Masks 0/255 become classes 0 (background) and 1
(building).

The archive is published as five 7z parts (``aerialimagelabeling.7z.001`` ... ``.005``, ~21 GB)
holding ``NEW2-AerialImageDataset.zip``; with ``download: true`` they are fetched into ``root`` and
extracted with the ``7z`` program (p7zip), which must be installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from seglab.data.datamodule import Split
from seglab.data.datasets.raster import RasterDataModule
from seglab.data.download import Resource, download_and_extract
from seglab.data.io import DataError, SplitNotFound

CLASS_NAMES = ("background", "building")
PALETTE = [(0, 0, 0), (255, 255, 255)]
CITIES = ("austin", "chicago", "kitsap", "tyrol-w", "vienna")
VAL_TILES = 5  # tiles 1-5 of each city
URL = "https://files.inria.fr/aerialimagelabeling/aerialimagelabeling.7z.{part:03d}"
PARTS = [Resource(URL.format(part=i), f"aerialimagelabeling.7z.{i:03d}") for i in range(1, 6)]
MANUAL = (
    "Download aerialimagelabeling.7z.001 ... .005 from https://project.inria.fr/aerialimagelabeling/"
    ", extract them with `7z x aerialimagelabeling.7z.001` and unzip NEW2-AerialImageDataset.zip "
    "in data.root (giving root/AerialImageDataset/train/images ...)."
)
_TILE = re.compile(r"^(?P<city>[a-z-]+?)(?P<number>\d+)$")


class InriaAerialDataModule(RasterDataModule):
    """Inria Aerial Image Labeling in its published layout (see the module docstring).

    Args:
        root: the directory holding ``AerialImageDataset``.
        download: fetch and extract the archive when ``AerialImageDataset`` is missing.
        **kwargs: ``RasterDataModule``'s (``eval_window``...) and the shared data settings.
    """

    def __init__(self, root: str, download: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("label_map", {255: 1})
        super().__init__(
            root,
            num_classes=len(CLASS_NAMES),
            class_names=list(CLASS_NAMES),
            image_dir="AerialImageDataset/train/images",
            mask_dir="AerialImageDataset/train/gt",
            **kwargs,
        )
        self.download = download
        self.palette = PALETTE

    @property
    def dataset_dir(self) -> Path:
        """The published layout's ``AerialImageDataset`` folder under ``root``."""
        return self.root / "AerialImageDataset"

    def download_data(self) -> None:
        if self.dataset_dir.is_dir() or not self.download:
            return
        if shutil.which("7z") is None:
            raise DataError(f"Inria Aerial: extracting the archive needs the 7z program. {MANUAL}")
        self.root.mkdir(parents=True, exist_ok=True)
        for part in PARTS:  # fetched only; the 7z parts are extracted together below
            download_and_extract([part], self.root, "Inria Aerial", MANUAL, extract=False)
        for args in (
            ["7z", "x", "-y", str(self.root / PARTS[0].filename)],
            ["7z", "x", "-y", str(self.root / "NEW2-AerialImageDataset.zip")],
        ):
            done = subprocess.run(args, cwd=self.root, capture_output=True, text=True)
            if done.returncode != 0:
                raise DataError(f"Inria Aerial: {' '.join(args)} failed: {done.stderr[-300:]}")
        if not self.dataset_dir.is_dir():
            raise DataError(f"Inria Aerial: no {self.dataset_dir} after extraction. {MANUAL}")

    def raster_pairs(self, split: Split) -> tuple[list[tuple[Path, Path]], list[str]]:
        if split == "test":
            raise SplitNotFound(
                f"{self.dataset_dir}/test: Inria's test masks are not published; predict "
                "test/images with --data.predict_dir"
            )
        if not self.dataset_dir.is_dir():
            raise SplitNotFound(
                f"{self.dataset_dir}: not found (set data.download: true, or: {MANUAL})"
            )
        pairs, problems = super().raster_pairs(split)
        chosen = []
        for image, mask in pairs:
            tile = _TILE.match(image.stem)
            if tile is None:
                problems.append(f"{image}: not an Inria tile name (city + number)")
                continue
            is_val = int(tile["number"]) <= VAL_TILES
            if is_val == (split == "val"):
                chosen.append((image, mask))
        if not chosen and not problems:
            problems.append(f"the {split} split is empty: no tiles in {self.dataset_dir}/train")
        return chosen, problems
