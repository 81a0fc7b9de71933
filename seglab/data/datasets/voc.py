"""Pascal VOC 2012 segmentation, optionally with the SBD augmented training set (10582 images).

On-disk layout (the official VOCtrainval_11-May-2012.tar extracted into ``root``)::

    root/VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg
    root/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png   palette PNG: index = class id,
                                                                255 = object boundary (ignored)
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt

Splits: train (1464), val (1449); VOC's test labels are not public, so ``test`` is val.

``use_sbd`` trains on VOC train + SBD (Hariharan et al., 2011) minus every VOC val image, from
either
  * the widely used pre-converted layout: ``VOC2012/SegmentationClassAug/*.png`` (class-id PNGs) and
    ``VOC2012/ImageSets/Segmentation/train_aug.txt``, or
  * SBD's own release: ``sbd_root/dataset/cls/*.mat`` (``GTcls.Segmentation``) with
    ``sbd_root/dataset/{train,val}.txt`` (needs scipy: ``pip install seglab[sbd]``); VOC's own
    annotation is used where an image has one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.folder import FolderDataset, unreadable_files
from seglab.data.download import Resource, download_and_extract
from seglab.data.io import DataError, read_image, read_mask
from seglab.data.palette import default_palette

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
RESOURCES = [
    Resource(
        "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "VOCtrainval_11-May-2012.tar",
        md5="6cd6e144f989b92b3379bac3b3de84fd",
    )
]
SBD_RESOURCES = [
    Resource(
        "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
        "benchmark.tgz",
        md5="82b4d87ceb2ed10f6038a1cba92111cb",
    )
]
MANUAL = (
    "Download VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and "
    "extract it into data.root (giving root/VOCdevkit/VOC2012)."
)
SBD_MANUAL = (
    "For use_sbd: either put SegmentationClassAug/*.png and ImageSets/Segmentation/train_aug.txt "
    "into VOCdevkit/VOC2012, or extract SBD's benchmark.tgz (http://home.bharathh.info/pubs/codes/SBD/"
    "download.html) into data.root (giving root/benchmark_RELEASE) or point data.sbd_root at it."
)


def read_ids(path: Path) -> list[str]:
    """Image ids of a list file; also reads ``/JPEGImages/x.jpg /SegmentationClassAug/x.png``
    lines."""
    if not path.is_file():
        raise DataError(f"{path}: split list not found")
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


def read_sbd_mat(path: Path) -> Tensor:
    """The class-id map of an SBD ``cls/*.mat`` file (``GTcls.Segmentation``)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(
            f"{path}: reading SBD .mat files needs scipy (pip install 'seglab[sbd]')"
        ) from None
    try:
        seg = loadmat(str(path))["GTcls"][0]["Segmentation"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise DataError(f"{path}: not an SBD GTcls .mat file: {e}") from None
    return torch.from_numpy(np.ascontiguousarray(seg, dtype=np.uint8))


class VOCDataset(FolderDataset):
    """JPEG images with class-id PNGs or SBD .mat masks."""

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        image_path, mask_path = self.pairs[index]
        mask = read_sbd_mat(mask_path) if mask_path.suffix == ".mat" else read_mask(mask_path)
        return read_image(image_path, self.exif_orientation), mask, str(image_path)


class VOCDataModule(SegmentationDataModule):
    """Pascal VOC 2012, 21 classes (background + 20 objects), boundaries ignored.

    Args:
        root: directory holding ``VOCdevkit/VOC2012`` (or the ``VOC2012`` directory itself).
        use_sbd: train on the SBD-augmented set (10582 images) instead of VOC train (1464).
        sbd_root: SBD's ``benchmark_RELEASE`` directory (default: ``root/benchmark_RELEASE``).
        download: fetch and extract VOC (and SBD with ``use_sbd``) into ``root`` if missing.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(
        self,
        root: str,
        use_sbd: bool = False,
        sbd_root: str | None = None,
        download: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.use_sbd = use_sbd
        self.sbd_root = Path(sbd_root).expanduser() if sbd_root else self.root / "benchmark_RELEASE"
        self.download = download
        self.num_classes = len(CLASS_NAMES)
        self.class_names = list(CLASS_NAMES)
        self.palette = [tuple(colour) for colour in default_palette(self.num_classes).tolist()]

    @property
    def voc_dir(self) -> Path:
        """The VOC2012 folder: ``root`` itself or its ``VOCdevkit/VOC2012``."""
        return self.root if (self.root / "JPEGImages").is_dir() else self.root / "VOCdevkit/VOC2012"

    def download_data(self) -> None:
        if not self.download:
            return
        if not (self.voc_dir / "ImageSets/Segmentation/val.txt").is_file():
            download_and_extract(RESOURCES, self.root, "Pascal VOC 2012", MANUAL)
        if self.use_sbd and not self._has_aug_pngs() and not self.sbd_root.is_dir():
            download_and_extract(SBD_RESOURCES, self.root, "SBD", SBD_MANUAL)

    def _has_aug_pngs(self) -> bool:
        return (self.voc_dir / "ImageSets/Segmentation/train_aug.txt").is_file() and (
            self.voc_dir / "SegmentationClassAug"
        ).is_dir()

    def split_pairs(self, split: Split) -> list[tuple[Path, Path]]:
        """``(image, mask)`` files of a split; with ``use_sbd`` the training split adds SBD's
        masks (``SegmentationClassAug`` PNGs or SBD's ``.mat`` files), never a ``val`` image."""
        voc = self.voc_dir
        lists = voc / "ImageSets/Segmentation"
        images, labels = voc / "JPEGImages", voc / "SegmentationClass"
        if split != "train":
            return [(images / f"{i}.jpg", labels / f"{i}.png") for i in read_ids(lists / "val.txt")]
        if not self.use_sbd:
            return [
                (images / f"{i}.jpg", labels / f"{i}.png") for i in read_ids(lists / "train.txt")
            ]
        val = set(read_ids(lists / "val.txt"))
        if self._has_aug_pngs():
            aug = voc / "SegmentationClassAug"
            ids = [i for i in read_ids(lists / "train_aug.txt") if i not in val]
            return [(images / f"{i}.jpg", aug / f"{i}.png") for i in ids]
        sbd = self.sbd_root / "dataset"
        if not (sbd / "cls").is_dir():
            raise DataError(f"data.use_sbd: no SBD data found at {self.sbd_root}. {SBD_MANUAL}")
        voc_train = read_ids(lists / "train.txt")
        sbd_ids = read_ids(sbd / "train.txt") + read_ids(sbd / "val.txt")
        ids = list(dict.fromkeys(voc_train + sbd_ids))  # ordered union
        in_voc = set(voc_train)
        return [
            (images / f"{i}.jpg", labels / f"{i}.png" if i in in_voc else sbd / "cls" / f"{i}.mat")
            for i in ids
            if i not in val
        ]

    def make_dataset(self, split: Split) -> VOCDataset:
        if not (self.voc_dir / "JPEGImages").is_dir():
            raise DataError(
                f"data.root: no VOCdevkit/VOC2012/JPEGImages under {self.root}. {MANUAL}"
            )
        pairs = self.split_pairs(split)
        problems = unreadable_files(pairs)
        if problems:
            raise DataError(
                *problems, hint=f"(files the Pascal VOC {split} split lists are missing) {MANUAL}"
            )
        return VOCDataset(
            pairs,
            self.num_classes,
            exif_orientation=self.exif_orientation,
            ignore_index=self.ignore_index,
        )
