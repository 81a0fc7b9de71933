"""Oxford-IIIT Pet (Parkhi et al., 2012): pets vs background from the trimaps.

On-disk layout (as extracted from the two official archives)::

    root/images/Abyssinian_1.jpg ...
    root/annotations/trimaps/Abyssinian_1.png   1 = pet, 2 = background, 3 = boundary/unclassified
    root/annotations/trainval.txt               "Image CLASS-ID SPECIES BREED-ID" lines, # comments
    root/annotations/test.txt

Splits: ``test`` is test.txt (3669 images). ``train``/``val`` divide trainval.txt (3680 images)
deterministically: every k-th line (k = round(1 / val_fraction), starting with the first) is
validation, the rest training. trainval.txt is grouped by breed, so validation covers every breed
(with the default 0.1: 368 validation and 3312 training images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.folder import FolderDataset, unreadable_files
from seglab.data.download import Resource, download_and_extract
from seglab.data.io import DataError
from seglab.errors import ConfigError

RESOURCES = [
    Resource(
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
        "images.tar.gz",
        md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
    ),
    Resource(
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        "annotations.tar.gz",
        md5="95a8c909bbe2e81eed6a22bccdf3f68f",
    ),
]
MANUAL = (
    "Download images.tar.gz and annotations.tar.gz from "
    "https://www.robots.ox.ac.uk/~vgg/data/pets/ and extract both into data.root (giving "
    "root/images and root/annotations)."
)
Boundary = Literal["ignore", "foreground", "background", "class"]


def read_list(path: Path) -> list[str]:
    """Image names of a split list, skipping ``#`` comments and blank lines."""
    if not path.is_file():
        raise DataError(f"{path}: split list not found. {MANUAL}")
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line.split()[0])
    return names


def trimap_lut(boundary: Boundary, ignore_index: int) -> Tensor:
    """Trimap value -> class id; values other than 1, 2, 3 map to -1 (an error)."""
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[1], lut[2] = 1, 0
    lut[3] = {"ignore": ignore_index, "foreground": 1, "background": 0, "class": 2}[boundary]
    return lut


class OxfordPetsDataset(FolderDataset):
    """Images and trimaps; the trimap's 1/2/3 codes become class ids in ``load``."""

    def __init__(self, pairs: list[tuple[Path, Path]], lut: Tensor, **kwargs) -> None:
        super().__init__(pairs, **kwargs)
        self.lut = lut

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        image, trimap, name = super().load(index)
        mask = self.lut[trimap.long()]
        if (mask < 0).any():
            bad = sorted(trimap[mask < 0].unique().tolist())
            raise DataError(
                f"{self.pairs[index][1]}: trimap has values {bad[:10]}; expected 1 (pet), "
                "2 (background), 3 (boundary)"
            )
        return image, mask, name


class OxfordPetsDataModule(SegmentationDataModule):
    """Oxford-IIIT Pet foreground segmentation.

    Args:
        root: directory holding ``images/`` and ``annotations/``.
        boundary: what the trimap's boundary band (value 3) becomes: ignored (the usual choice),
            pet, background, or a third class ``boundary``.
        val_fraction: share of trainval.txt held out for validation (every k-th line).
        download: fetch and extract the official archives into ``root`` if they are missing.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(
        self,
        root: str,
        boundary: Boundary = "ignore",
        val_fraction: float = 0.1,
        download: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.boundary = boundary
        self.val_fraction = val_fraction
        self.download = download
        self.class_names = ["background", "pet"] + (["boundary"] if boundary == "class" else [])
        self.num_classes = len(self.class_names)
        self.palette = [(0, 0, 0), (128, 0, 0), (255, 255, 255)][: self.num_classes]

    def download_data(self) -> None:
        if self.download and not (self.root / "annotations" / "trainval.txt").is_file():
            download_and_extract(RESOURCES, self.root, "Oxford-IIIT Pet", MANUAL)

    def split_names(self, split: Split) -> list[str]:
        """The image names of a split: ``test.txt``; every ``1 / val_fraction``-th line of
        ``trainval.txt`` for ``val``, the others for ``train``."""
        if split == "test":
            return read_list(self.root / "annotations" / "test.txt")
        names = read_list(self.root / "annotations" / "trainval.txt")
        k = max(2, round(1 / self.val_fraction))
        return [n for i, n in enumerate(names) if (i % k == 0) == (split == "val")]

    def make_dataset(self, split: Split) -> OxfordPetsDataset:
        if not self.root.is_dir():
            raise DataError(f"data.root: {self.root} is not a directory. {MANUAL}")
        pairs = [
            (self.root / "images" / f"{n}.jpg", self.root / "annotations" / "trimaps" / f"{n}.png")
            for n in self.split_names(split)
        ]
        problems = unreadable_files(pairs)
        if problems:
            raise DataError(
                *problems,
                hint=f"(files the Oxford-IIIT Pet {split} split lists are missing) {MANUAL}",
            )
        return OxfordPetsDataset(
            pairs,
            trimap_lut(self.boundary, self.ignore_index),
            num_classes=self.num_classes,
            exif_orientation=self.exif_orientation,
            ignore_index=self.ignore_index,
        )
