"""An image with an EXIF orientation is never silently paired with a mask drawn the other way:
``data.exif_orientation`` says whether masks follow the displayed image or the stored pixels, and
without it such images are refused."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageOps

from seglab import DataError, FolderDataModule
from seglab.data.exif import apply_orientation
from tests.data.awkward_files import classes_seen, sample_image, save_jpeg, shapes_mask

STORED = shapes_mask(40, 48, [0, 1, 2])  # the labels of the stored pixels (H=40, W=48)


def displayed(array: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for stored pixels with this orientation (PIL's reading of the tag)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", exif=exif)
    return np.array(ImageOps.exif_transpose(Image.open(buffer)))


def write_rotated(root: Path, orientation: int, mask_drawn_on: str) -> Path:
    """``root/train/{images,masks}/photo.*``: a JPEG stored as shot with an EXIF orientation, and a
    mask drawn on the displayed image or on the stored pixels."""
    (root / "train/images").mkdir(parents=True)
    (root / "train/masks").mkdir(parents=True)
    save_jpeg(sample_image(STORED), root / "train/images/photo.jpg", 95, orientation)
    mask = displayed(STORED, orientation) if mask_drawn_on == "displayed" else STORED
    Image.fromarray(mask).save(root / "train/masks/photo.png")
    return root


def load(root: Path, exif: str):
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0, exif_orientation=exif)
    image, mask, _ = dm.source("train").read(0)
    return image.numpy(), mask.numpy()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_turns_pixels_as_viewers_do(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    turned = apply_orientation(torch.from_numpy(pixels).permute(2, 0, 1), orientation)
    assert np.array_equal(turned.permute(1, 2, 0).numpy(), displayed(pixels, orientation))


@pytest.mark.parametrize("orientation", [3, 6])
@pytest.mark.parametrize("drawn_on", ["displayed", "stored"])
def test_by_default_a_rotated_photo_is_refused_naming_it_and_the_option(
    tmp_path, orientation, drawn_on
):
    root = write_rotated(tmp_path / "data", orientation, drawn_on)
    with pytest.raises(
        DataError,
        match=rf"photo\.jpg: EXIF orientation {orientation}: viewers show it .*"
        r"Set data.exif_orientation to apply .* or ignore",
    ):
        load(root, "refuse")


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_apply_pairs_the_displayed_image_with_a_mask_drawn_on_it(tmp_path, orientation):
    image, mask = load(write_rotated(tmp_path / "data", orientation, "displayed"), "apply")
    assert image.shape[1:] == mask.shape == displayed(STORED, orientation).shape
    assert (classes_seen(image) == mask).mean() > 0.97


def test_ignore_pairs_the_stored_pixels_with_a_mask_drawn_on_them(tmp_path):
    image, mask = load(write_rotated(tmp_path / "stored", 3, "stored"), "ignore")
    assert image.shape[1:] == mask.shape == STORED.shape
    assert (classes_seen(image) == mask).mean() > 0.97
    # The setting is a statement about the masks: a half-turned photo whose mask was drawn on the
    # displayed image has the same size and is misaligned under "ignore" (hence no default guess).
    image, mask = load(write_rotated(tmp_path / "displayed", 3, "displayed"), "ignore")
    assert (classes_seen(image) == mask).mean() < 0.8


@pytest.mark.parametrize(("exif", "drawn_on"), [("apply", "stored"), ("ignore", "displayed")])
def test_a_quarter_turn_against_the_setting_is_a_size_error_naming_the_mask(
    tmp_path, exif, drawn_on
):
    root = write_rotated(tmp_path / "data", 6, drawn_on)
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0, exif_orientation=exif)
    with pytest.raises(DataError, match=r"masks/photo\.png: mask is \d+x\d+ \(HxW\) but its image"):
        dm.dataset("train")[0]
