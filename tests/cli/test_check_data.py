"""Bad input is caught before training, with the file and the problem named."""

import numpy as np
import pytest
import yaml
from PIL import Image

from seglab import DataError, FolderDataModule
from seglab.cli import main
from seglab.data.checks import check_data
from tests.conftest import tiny_folder_run, user_error, write_folder_dataset
from tests.data.awkward_files import broken_link, save_jpeg, save_png16, shapes_mask


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
    assert sorted(e.value.problems) == [
        f"{root}/train/images/img000.png: image without a mask (no img000.* in {root}/train/masks)",
        f"{root}/train/images/other.png: image without a mask (no other.* in {root}/train/masks)",
        f"{root}/train/masks/img002.png: mask without an image "
        f"(no img002.* in {root}/train/images)",
    ]


def test_image_mask_size_mismatch(root):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "train/masks/img001.png")
    with pytest.raises(
        DataError,
        match=r"train/masks/img001\.png: mask is 20x20 \(HxW\) but its image "
        r"\S+/train/images/img001\.png is 40x48",
    ):
        _dm(root).dataset("train")[1]


def test_mask_value_neither_class_nor_ignore(root):
    mask = np.zeros((40, 48), np.uint8)
    mask[5, 5] = 9
    Image.fromarray(mask).save(root / "train/masks/img000.png")
    with pytest.raises(DataError, match=r"train/masks/img000\.png: mask has values \[9\]"):
        _dm(root).dataset("train")[0]


def test_wrong_mask_channel_count(root):
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "train/masks/img000.png")
    with pytest.raises(DataError, match=r"masks/img000\.png: mask has 3 channels"):
        _dm(root).dataset("train")[0]


def test_an_empty_split_names_its_directory(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 0})
    with pytest.raises(DataError, match=rf"the val split is empty: no images in {root}/val/images"):
        _dm(root).setup("fit")
    (root / "val.txt").write_text("\n")
    dm = FolderDataModule(str(root), num_classes=3, list_file="{split}.txt")
    with pytest.raises(
        DataError, match=rf"the val split is empty: {root}/val.txt lists no samples"
    ):
        dm.dataset("val")


def test_training_stops_on_a_bad_sample_naming_the_file(root, capsys):
    mask = np.full((40, 48), 7, np.uint8)
    Image.fromarray(mask).save(root / "val/masks/img001.png")
    user_error(
        [
            "fit",
            *tiny_folder_run(root, "--data.batch_size", "2", "--data.eval_batch_size", "1"),
            *["--data.crop_size", "32", "--trainer.fast_dev_run", "2"],
        ],
        capsys,
        1,
        "val/masks/img001.png: mask has values [7]",
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
    assert "[val]" in err and "val/masks/img000.png: mask is 10x10" in err
    assert "note: [test] no test split" in out
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


def _config(tmp_path, root, **init_args) -> str:
    config = tmp_path / "exp.yaml"
    init_args = {"root": str(root), **init_args}
    data = {"class_path": "seglab.FolderDataModule", "init_args": init_args}
    config.write_text(yaml.safe_dump({"data": data}))
    return str(config)


def test_check_data_lists_every_problem_of_a_mixed_folder_each_naming_its_file(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 9, "val": 2, "test": 0})
    train = root / "train"
    mask = np.array(Image.open(train / "masks/img000.png"))
    rgb = np.array(Image.open(train / "images/img000.png"))
    (train / "masks/img000.png").unlink()
    save_jpeg(mask, train / "masks/img000.jpg")  # lossy mask
    image_target = broken_link(train / "images/img001.png")  # a broken image link
    broken_link(train / "images/img002.png")  # image and mask both broken links
    broken_link(train / "masks/img002.png")
    Image.fromarray(np.where(mask == 1, 9, mask).astype(np.uint8)).save(train / "masks/img003.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(train / "masks/img004.png")
    save_png16(rgb.astype(np.uint16) * 257, train / "images/img005.png")
    (train / "images/img006.png").unlink()
    Image.fromarray(rgb).convert("CMYK").save(train / "images/img006.jpg")  # converted: a note
    (train / "images/img007.png").unlink()
    save_jpeg(rgb, train / "images/img007.jpg", orientation=6)  # EXIF: refused by default
    (train / "notes.txt").write_text("not a sample, outside the image directory")
    (train / "images/readme.txt").write_text("not an image")

    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", "--config", _config(tmp_path, root, num_classes=3)])
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    problems = [line[4:] for line in err.splitlines() if line.startswith("  - ")]
    expected = {  # the start of each problem line, and what it says
        f"[train] {train}/images/readme.txt": "not an image file",
        f"[train] {train}/images/img001.png": f"broken symbolic link to {image_target}",
        f"[train] {train}/images/img002.png": "broken symbolic link",
        f"[train] {train}/masks/img002.png": "broken symbolic link",
        f"[train] {train}/masks/img000.jpg": "mask is stored as JPEG, a lossy format",
        f"[train] {train}/masks/img003.png": "mask has values [9]",
        f"[train] {train}/masks/img004.png": "mask is 20x20 (HxW) but its image",
        f"[train] {train}/images/img005.png": "image has 16 bits per channel",
        f"[train] {train}/images/img007.jpg": "EXIF orientation 6",
        "[test] the test split is empty": f"no images in {root}/test/images",
    }
    assert len(problems) == len(expected) and f"{len(expected)} problem(s) found" in err
    for start, what in expected.items():
        assert sum(p.startswith(f"{start}:") and what in p for p in problems) == 1, start
    assert "train: 7 samples, val: 2 samples, test: 0 samples" in out  # broken links: no sample
    assert "note: [train] 1 images: CMYK converted to RGB without colour management" in out
    assert "img006.jpg" in out


def test_check_data_warns_about_photo_like_masks_and_still_passes(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 1}, size=(64, 96))
    drawn = shapes_mask(128, 192, [0, 2])
    resized = Image.fromarray(drawn).resize((96, 64), Image.Resampling.BILINEAR)  # 1s on edges
    assert set(np.unique(resized).tolist()) == {0, 1, 2}  # every value a valid class id
    resized.save(root / "train/masks/img001.png")
    Image.fromarray(shapes_mask(64, 96, [0, 2, 1])).save(root / "val/masks/img000.png")  # drawn
    main(["check-data", "--config", _config(tmp_path, root, num_classes=3)])  # status 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert (
        len(warnings) == 1
        and f"[train] {root}/train/masks/img001.png: mask looks photo-like" in (warnings[0])
    )
    assert "No problems in train, val" in out


def test_check_data_says_what_it_did_with_exif_orientations(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 1})
    rgb = np.array(Image.open(root / "train/images/img001.png"))
    (root / "train/images/img001.png").unlink()
    save_jpeg(rgb, root / "train/images/img001.jpg", orientation=3)  # 180°: sizes unchanged
    config = _config(tmp_path, root, num_classes=3, exif_orientation="ignore")
    main(["check-data", "--config", config])  # status 0
    assert (
        "note: [train] 1 images: EXIF orientation other than 1, used as stored "
        f"(data.exif_orientation: ignore): {root}/train/images/img001.jpg (orientation 3"
    ) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("init_args", "message"),
    [
        ({"num_classes": 0}, "data.num_classes must be at least 1, got 0"),
        (
            {"num_classes": 3, "class_names": ["a"]},
            "data.class_names has 1 names but data.num_classes is 3",
        ),
        ({"num_classes": 3, "root": "/nowhere"}, "data.root: /nowhere is not a directory"),
    ],
)
def test_a_wrong_data_config_is_a_short_message_and_exit_status_2(
    tmp_path, capsys, init_args, message
):
    root = write_folder_dataset(tmp_path / "data", {"train": 1})
    args = dict(init_args)
    config = _config(tmp_path, args.pop("root", root), **args)
    user_error(["check-data", "--config", config], capsys, 2, message)


def test_check_data_reports_the_image_too_when_reading_stopped_at_its_mask(tmp_path):
    # Reading a sample stops at its lossy mask, before its image is decoded: check-data still
    # reads the image and reports its own problem, so one run names both files.
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 1})
    train = root / "train"
    mask = np.array(Image.open(train / "masks/img000.png"))
    (train / "masks/img000.png").unlink()
    save_jpeg(mask, train / "masks/img000.jpg")
    rgb = np.array(Image.open(train / "images/img000.png"))
    save_png16(rgb.astype(np.uint16) * 257, train / "images/img000.png")
    reports = check_data(_dm(root), ["train"])
    problems = reports["train"].problems
    assert len(problems) == 2 and reports["train"].samples == 2
    assert problems[0].startswith(f"{train}/masks/img000.jpg: mask is stored as JPEG")
    assert problems[1].startswith(f"{train}/images/img000.png: image has 16 bits per channel")
