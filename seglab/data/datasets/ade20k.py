"""ADE20K scene parsing (MIT SceneParsing benchmark, ADEChallengeData2016): 150 classes.

On-disk layout (ADEChallengeData2016.zip extracted into ``root``)::

    root/ADEChallengeData2016/images/{training,validation}/ADE_train_00000001.jpg
    root/ADEChallengeData2016/annotations/{training,validation}/ADE_train_00000001.png

Annotation value 0 is "other" (outside the 150 classes) and is ignored; value v > 0 is class v - 1.
Splits: training (20210), validation (2000); the challenge's test labels are not public, so ``test``
is validation.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.folder import FolderDataset, match_files
from seglab.data.download import Resource, download_and_extract
from seglab.data.io import DataError

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
# The colours of the official scene-parsing toolkit (CSAILVision/sceneparsing color150).
PALETTE = [
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255), (8,
    255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255), (224,
    255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20), (255, 8,
    41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140,
    140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255,
    82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163,
    0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41),
    (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184), (0, 31, 255),
    (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82), (0, 10, 255), (0,
    112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0), (0,
    255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184,
    170), (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214,
    255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0,
    255), (153, 0, 255), (71, 255, 0), (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255,
    235), (133, 255, 0), (255, 0, 235), (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190,
    212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41,
    255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255), (71, 0, 255),
    (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
]  # fmt: skip
RESOURCES = [
    Resource(
        "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
        "ADEChallengeData2016.zip",
        sha1="219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
    )
]
MANUAL = (
    "Download http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unzip it "
    "into data.root (giving root/ADEChallengeData2016/images and .../annotations)."
)
SPLIT_DIRS = {"train": "training", "val": "validation", "test": "validation"}


class ADE20KDataset(FolderDataset):
    """Images and annotation PNGs; ``0`` becomes ``ignore_index`` and ``v`` becomes ``v - 1``."""

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        image, mask, name = super().load(index)
        mask = mask.long() - 1
        mask[mask < 0] = self.ignore_index
        return image, mask, name


class ADE20KDataModule(SegmentationDataModule):
    """ADE20K (SceneParsing 2016), 150 classes.

    Args:
        root: directory holding ``ADEChallengeData2016/`` (or that directory itself).
        download: fetch and extract the official archive into ``root`` if it is missing.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(self, root: str, download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.download = download
        self.num_classes = len(CLASS_NAMES)
        self.class_names = list(CLASS_NAMES)
        self.palette = list(PALETTE)

    @property
    def data_dir(self) -> Path:
        """The folder holding ``images/`` and ``annotations/``: ``root`` or its
        ``ADEChallengeData2016``."""
        return self.root if (self.root / "images").is_dir() else self.root / "ADEChallengeData2016"

    def download_data(self) -> None:
        if self.download and not (self.data_dir / "annotations").is_dir():
            download_and_extract(RESOURCES, self.root, "ADE20K", MANUAL)

    def make_dataset(self, split: Split) -> ADE20KDataset:
        sub = SPLIT_DIRS[split]
        image_dir, label_dir = self.data_dir / "images" / sub, self.data_dir / "annotations" / sub
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DataError(f"ADE20K: {image_dir} or {label_dir} not found. {MANUAL}")
        pairs, problems = match_files(image_dir, label_dir)
        return ADE20KDataset(
            pairs,
            self.num_classes,
            exif_orientation=self.exif_orientation,
            problems=problems,
            ignore_index=self.ignore_index,
        )
