import numpy as np
import pytest
import torch
from PIL import Image

from seglab import DataError, FolderDataModule
from seglab.errors import ConfigError
from tests.conftest import write_folder_dataset
from tests.data.awkward_files import broken_link, save_jpeg, save_png16


def test_pairs_by_stem_and_yields_batches(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 4, "val": 3}, image_ext=".jpg")
    dm = FolderDataModule(
        str(root),
        num_classes=3,
        class_names=["a", "b", "c"],
        batch_size=2,
        crop_size=32,
        num_workers=0,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 32, 32) and batch["mask"].dtype == torch.long
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (40, 48)  # evaluation keeps the full image
    assert val["name"][0].endswith("val/images/img000.jpg")
    # masks: classes 0..2 and the ignored border row
    assert set(val["mask"].unique().tolist()) <= {0, 1, 2, 255}
    assert (val["mask"][:, 0] == 255).all()
    assert dm.class_names == ["a", "b", "c"] and dm.num_classes == 3


def test_list_file_selects_and_orders_samples(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 3})
    (root / "val.txt").write_text("img002\nimg000\n")
    dm = FolderDataModule(
        str(root), num_classes=3, list_file="{split}.txt", eval_batch_size=1, num_workers=0
    )
    names = [s["name"] for s in dm.dataset("val")]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["img002.png", "img000.png"]


def test_image_without_mask_is_an_error_not_a_skipped_sample(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 3})
    (root / "train" / "masks" / "img001.png").unlink()
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0)
    with pytest.raises(DataError, match=r"train/images/img001.png: image without a mask"):
        dm.dataset("train")


def test_mask_values_outside_the_classes_name_the_file(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 2})
    bad = np.full((40, 48), 7, dtype=np.uint8)
    Image.fromarray(bad).save(root / "train" / "masks" / "img001.png")
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0)
    with pytest.raises(
        DataError, match=r"img001.*values \[7\].*class ids 0..2 nor ignore_index 255"
    ):
        dm.dataset("train")[1]


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data.root: .*nowhere is not a directory"):
        FolderDataModule(str(tmp_path / "nowhere"), num_classes=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": 0}, "data.crop_size must be a positive int"),
        ({"crop_size": [32, 32, 3]}, "data.crop_size must be a positive int"),
    ],
)
def test_bad_data_settings_name_the_option(tmp_path, kwargs, message):
    root = write_folder_dataset(tmp_path / "data", {"train": 1})
    with pytest.raises(ValueError, match=message):
        FolderDataModule(str(root), num_classes=3, **kwargs)


def test_a_broken_image_link_is_named_with_its_target_not_as_a_mask_without_image(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 4})
    target = broken_link(root / "train/images/img001.png")
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0)
    with pytest.raises(DataError) as e:
        dm.dataset("train")
    assert e.value.problems == [
        f"{root}/train/images/img001.png: broken symbolic link to {target} "
        "(the target does not exist)"
    ]


def test_an_image_and_its_mask_both_broken_links_are_both_reported_not_skipped(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 4})
    broken_link(root / "train/images/img002.png")
    broken_link(root / "train/masks/img002.png")
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0, batch_size=2)
    with pytest.raises(DataError) as e:
        dm.setup("fit")  # training would otherwise use 3 of the 4 samples
    assert [p.split(": ")[0] for p in e.value.problems] == [
        f"{root}/train/images/img002.png",
        f"{root}/train/masks/img002.png",
    ]
    assert all("broken symbolic link" in p for p in e.value.problems)


def test_a_lossy_mask_stops_loading_naming_the_mask_and_why(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 2})
    mask = np.array(Image.open(root / "train/masks/img001.png"))
    (root / "train/masks/img001.png").unlink()
    save_jpeg(mask, root / "train/masks/img001.jpg", quality=75)
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0)
    with pytest.raises(
        DataError, match=r"train/masks/img001\.jpg: mask is stored as JPEG, a lossy"
    ):
        dm.dataset("train")[1]


def test_cmyk_and_grey_images_train_as_rgb_and_16_bit_images_are_refused(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 3})
    rgb = np.array(Image.open(root / "train/images/img000.png"))
    Image.fromarray(rgb).convert("CMYK").save(root / "train/images/img000.jpg", quality=100)
    Image.fromarray(rgb[..., 0]).save(root / "train/images/img001.tif")
    save_png16(rgb.astype(np.uint16) * 257, root / "train/images/img002.png")
    for stem in ("img000", "img001"):
        (root / f"train/images/{stem}.png").unlink()
    dm = FolderDataModule(str(root), num_classes=3, num_workers=0)
    image, _, name = dm.source("train").read(0)
    assert name.endswith("img000.jpg") and image.shape == (3, 40, 48)
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - rgb).max() <= 3  # JPEG noise
    image, _, _ = dm.source("train").read(1)
    assert (image == image[0]).all()  # grey in all three channels
    with pytest.raises(DataError, match=r"img002\.png: image has 16 bits per channel.*8-bit RGB"):
        dm.dataset("train")[2]
