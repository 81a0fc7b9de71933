import numpy as np
import pytest
import torch
from PIL import Image

from seglab import DataError, FolderDataModule
from seglab.errors import ConfigError
from tests.conftest import write_folder_dataset


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
    with pytest.raises(DataError, match=r"1 images without a mask .*'img001'"):
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
