"""Cityscapes fine annotations: 19 evaluation classes mapped from the label ids.

On-disk layout (gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip extracted into ``root``)::

    root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Label ids become train ids with the official table (cityscapesScripts ``labels.py``); every id
without a train id (unlabeled, ego vehicle, rectification border, out of roi, static, dynamic,
ground, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, license plate)
is ignored. Splits: train (2975), val (500); test labels are not public, so ``test`` is val.
The dataset cannot be downloaded without registering, so there is no ``download`` option.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.folder import FolderDataset
from seglab.data.io import DataError

# (label id, name, colour) of the 19 classes, in train-id order.
CLASSES: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (17, "pole", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
)
MANUAL = (
    "Cityscapes needs a free registration: log in at "
    "https://www.cityscapes-dataset.com/downloads/, download gtFine_trainvaltest.zip (241 MB) and "
    "leftImg8bit_trainvaltest.zip (11 GB) and unzip both into data.root (giving root/gtFine and "
    "root/leftImg8bit)."
)


def label_id_lut(ignore_index: int) -> Tensor:
    """Label id (0..255) -> train id; ids without one -> ``ignore_index``."""
    # uint8 when ignore_index fits: the masks stay uint8, the mask check's fast path
    dtype = torch.uint8 if 0 <= ignore_index <= 255 else torch.long
    lut = torch.full((256,), ignore_index, dtype=dtype)
    for train_id, (label_id, _, _) in enumerate(CLASSES):
        lut[label_id] = train_id
    return lut


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, labelIds)`` pairs of a split, sorted by city and frame; a missing label is an
    error."""
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir() or not (root / "gtFine" / split).is_dir():
        raise DataError(f"Cityscapes: {image_dir} or {root / 'gtFine' / split} not found. {MANUAL}")
    pairs = []
    for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise DataError(f"{image}: its label {label} is missing. {MANUAL}")
        pairs.append((image, label))
    return pairs


class CityscapesDataset(FolderDataset):
    """Images and labelIds PNGs; label ids become train ids in ``load``."""

    def __init__(self, pairs: list[tuple[Path, Path]], lut: Tensor, **kwargs) -> None:
        super().__init__(pairs, **kwargs)
        self.lut = lut

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        image, label_ids, name = super().load(index)
        if label_ids.max() > 255 or label_ids.min() < 0:
            raise DataError(f"{self.pairs[index][1]}: label ids outside 0..255")
        if label_ids.dtype == torch.uint8:  # a table lookup in numpy: ~4x faster than torch's
            return image, torch.from_numpy(self.lut.numpy()[label_ids.numpy()]), name
        return image, self.lut[label_ids.long()], name


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes (fine annotations), 19 classes.

    Args:
        root: directory holding ``leftImg8bit/`` and ``gtFine/``.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.class_names = [name for _, name, _ in CLASSES]
        self.num_classes = len(CLASSES)
        self.palette = [colour for _, _, colour in CLASSES]

    def make_dataset(self, split: Split) -> CityscapesDataset:
        pairs = find_pairs(self.root, "train" if split == "train" else "val")
        return CityscapesDataset(
            pairs,
            label_id_lut(self.ignore_index),
            num_classes=self.num_classes,
            exif_orientation=self.exif_orientation,
            ignore_index=self.ignore_index,
        )
