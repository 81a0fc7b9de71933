"""Bad input is caught before training, with the file and the problem named."""

import numpy as np
import pytest
import yaml
from PIL import Image

from seglab import DataError, FolderDataModule
from seglab.cli import main
from tests.conftest import TINY_RUN, user_error, write_folder_dataset


def _dm(root) -> FolderDataModule:
    return FolderDataModule(str(root), num_classes=3, num_workers=0, batch_size=2, crop_size=32)


@pytest.fixture
def root(tmp_path):
    return write_folder_dataset(tmp_path / "data", {"train": 3, "val": 2})


def test_corrupt_image(root):
    (root / "train/images/img001.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match=r"img001\.png: cannot decode image"):
        _dm(root).dataset("train")[1]


def test_truncated_image(root):
    path = root / "train/images/img002.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"img002\.png: cannot decode image .*truncated"):
        _dm(root).dataset("train")[2]


def test_non_image_file(root):
    (root / "train/images/notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: not an image file"):
        _dm(root).dataset("train")


def test_images_without_masks_and_masks_without_images(root):
    (root / "train/masks/img000.png").unlink()
    (root / "train/images/img002.png").rename(root / "train/images/other.png")
    with pytest.raises(DataError) as e:
        _dm(root).dataset("train")
    assert "images without a mask" in str(e.value) and "'img000'" in str(e.value)
    assert "masks without an image" in str(e.value) and "'img002'" in str(e.value)


def test_image_mask_size_mismatch(root):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "train/masks/img001.png")
    with pytest.raises(
        DataError, match=r"img001\.png: image is 40x48 \(HxW\) but its mask is 20x20"
    ):
        _dm(root).dataset("train")[1]


def test_mask_value_neither_class_nor_ignore(root):
    mask = np.zeros((40, 48), np.uint8)
    mask[5, 5] = 9
    Image.fromarray(mask).save(root / "train/masks/img000.png")
    with pytest.raises(DataError, match=r"img000\.png: mask has values \[9\]"):
        _dm(root).dataset("train")[0]


def test_wrong_mask_channel_count(root):
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "train/masks/img000.png")
    with pytest.raises(DataError, match=r"masks/img000\.png: mask has 3 channels"):
        _dm(root).dataset("train")[0]


def test_empty_split(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 0})
    with pytest.raises(DataError, match="the val split of FolderDataModule is empty"):
        _dm(root).setup("fit")


def test_training_stops_on_a_bad_sample_naming_the_file(root, capsys):
    mask = np.full((40, 48), 7, np.uint8)
    Image.fromarray(mask).save(root / "val/masks/img001.png")
    user_error(
        [
            "fit",
            *TINY_RUN,
            "--trainer.fast_dev_run",
            "2",
            "--data",
            "seglab.FolderDataModule",
            "--data.root",
            str(root),
            "--data.num_classes",
            "3",
            "--data.num_workers",
            "0",
            "--data.batch_size",
            "2",
            "--data.eval_batch_size",
            "1",
            "--data.crop_size",
            "32",
        ],
        capsys,
        1,
        "val/images/img001.png: mask has values [7]",
    )


def test_check_data_reports_every_problem_in_one_run_then_a_histogram(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 4, "val": 3})
    (root / "train/images/img001.png").write_bytes(b"garbage")  # corrupt
    Image.fromarray(np.full((40, 48), 8, np.uint8)).save(
        root / "train/masks/img002.png"
    )  # bad values
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "val/masks/img000.png")  # size
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"ignore_index": 255},
                "data": {
                    "class_path": "seglab.FolderDataModule",
                    "init_args": {
                        "root": str(root),
                        "num_classes": 3,
                        "class_names": ["a", "b", "c"],
                    },
                },
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", "--config", str(config)])
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "3 problem(s) found" in err
    assert "[train]" in err and "img001.png: cannot decode image" in err
    assert "img002.png: mask has values [8]" in err
    assert "[val]" in err and "img000.png: image is 40x48" in err
    assert "note: no test split" in out
    assert "Pixels per class" in out and out.count("%") >= 6  # a row per class and split


def test_check_data_passes_a_clean_dataset(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 2, "test": 1})
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "class_path": "seglab.FolderDataModule",
                    "init_args": {"root": str(root), "num_classes": 3},
                }
            }
        )
    )
    main(["check-data", "--config", str(config)])  # no SystemExit: status 0
    assert "No problems in train, val, test" in capsys.readouterr().out
