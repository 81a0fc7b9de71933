import numpy as np
import pytest
from PIL import Image

from seglab import DataError, FolderDataModule
from tests.conftest import write_folder_dataset

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


def _to_colour(root, ignore=(255, 255, 255)):
    """Rewrites the class-id masks of a folder dataset as RGB colour masks."""
    colours = np.array([*PALETTE, *[ignore] * 253], dtype=np.uint8)
    for path in root.glob("*/masks/*.png"):
        ids = np.array(Image.open(path))
        Image.fromarray(colours[ids]).save(path)


def test_rgb_masks_map_to_class_ids_through_the_palette(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 2}, num_classes=3)
    ids = np.array(Image.open(root / "val/masks/img000.png"))
    _to_colour(root)
    dm = FolderDataModule(
        str(root), num_classes=3, palette=PALETTE, ignore_color=(255, 255, 255), num_workers=0
    )
    _, mask, _ = dm.source("val").read(0)
    assert np.array_equal(mask.numpy(), ids)  # the same classes, 255 where the ignore colour is
    assert (mask[0] == 255).all()


def test_a_colour_outside_the_palette_names_file_and_colour(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 1}, num_classes=3)
    _to_colour(root, ignore=(9, 8, 7))
    dm = FolderDataModule(str(root), num_classes=3, palette=PALETTE, num_workers=0)
    with pytest.raises(
        DataError, match=r"val/masks/img000.png: mask has colours not in the palette: \(9, 8, 7\)"
    ):
        dm.dataset("val")[0]


def test_palette_must_match_the_classes():
    with pytest.raises(ValueError, match=r"data.palette has 2 colours but data.num_classes is 3"):
        FolderDataModule(".", num_classes=3, palette=PALETTE[:2])
