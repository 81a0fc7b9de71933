import errno
import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from seglab import DataError, FolderDataModule
from seglab.cli import main
from seglab.data.cache import DecodedCache, open_cache
from seglab.data.datasets.base import TransformedDataset
from seglab.data.datasets.cityscapes import CityscapesDataModule
from seglab.data.datasets.voc import VOCDataModule
from seglab.data.transforms import eval_transform
from tests.conftest import REPO, TINY, write_folder_dataset
from tests.data.datasets.fixtures import write_cityscapes, write_voc

PALETTE = [(0, 0, 0), (200, 10, 10), (10, 200, 10)]


def _folder(root, cache_dir, **kwargs):
    kwargs = {"num_classes": 3, "num_workers": 0, "crop_size": 32, **kwargs}
    return FolderDataModule(str(root), cache_dir=str(cache_dir), **kwargs)


def _assert_cache_matches_decoding(cache):
    assert isinstance(cache, DecodedCache) and len(cache) == len(cache.dataset)
    for i in range(len(cache)):
        image, mask, name = cache.dataset.read(i)
        cached_image, cached_mask, cached_name = cache.read(i)
        assert cached_name == name
        assert cached_image.dtype == torch.uint8 and torch.equal(cached_image, image)
        assert cached_mask.dtype == torch.uint8 and torch.equal(cached_mask.long(), mask.long())


@pytest.mark.parametrize("image_ext", [".png", ".jpg"])
def test_folder_cache_equals_direct_decoding(tmp_path, image_ext):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 2}, image_ext=image_ext)
    dm = _folder(root, tmp_path / "cache")
    for split in ("train", "val"):
        _assert_cache_matches_decoding(dm.source(split))


def test_colour_mask_cache_equals_direct_decoding(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(2):
            ids = np.random.default_rng(i).integers(0, 3, (24, 32))
            rgb = np.asarray(PALETTE, dtype=np.uint8)[ids]
            Image.fromarray(rgb).save(root / split / "masks" / f"{i}.png")
            Image.fromarray(255 - rgb).save(root / split / "images" / f"{i}.png")
    dm = _folder(root, tmp_path / "cache", palette=PALETTE)
    _assert_cache_matches_decoding(dm.source("train"))


def test_real_layouts_cache_equals_direct_decoding(tmp_path):
    # Cityscapes maps label ids through a table; VOC reads palette PNGs with a 255 boundary band.
    city = CityscapesDataModule(
        str(write_cityscapes(tmp_path / "cs")), cache_dir=str(tmp_path / "c1"), num_workers=0
    )
    voc = VOCDataModule(
        str(write_voc(tmp_path / "voc")), cache_dir=str(tmp_path / "c2"), num_workers=0
    )
    for dm in (city, voc):
        for split in ("train", "val"):
            _assert_cache_matches_decoding(dm.source(split))


@pytest.mark.parametrize("split", ["train", "val"])
def test_the_cache_and_the_dataset_give_the_same_samples_through_one_transform(tmp_path, split):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 2})
    plain = FolderDataModule(str(root), num_classes=3, crop_size=24, num_workers=0)
    cached = _folder(root, tmp_path / "cache", crop_size=24)
    dataset, cache = plain.source(split), cached.source(split)
    assert isinstance(cache, DecodedCache) and not isinstance(dataset, DecodedCache)
    # the wrapper has the dataset's read interface
    assert (len(cache), cache.num_classes, cache.ignore_index) == (len(dataset), 3, 255)
    assert cache.problems == dataset.problems == []
    assert [cache.image_file(i) for i in range(len(cache))] == [image for image, _ in dataset.pairs]
    assert [cache.mask_file(i) for i in range(len(cache))] == [m for _, m in dataset.pairs]
    transform = plain.training_transform() if split == "train" else eval_transform()
    for i in range(len(dataset)):
        torch.manual_seed(i)
        a = TransformedDataset(dataset, transform)[i]
        torch.manual_seed(i)
        b = TransformedDataset(cache, transform)[i]
        assert a["name"] == b["name"] and a["mask"].dtype == b["mask"].dtype == torch.int64
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    # what the loaders read: the transform over the cache wrapper, not over the dataset
    assert cached.dataset(split).source is cache and plain.dataset(split).source is dataset


def test_changed_file_is_decoded_again_and_the_rest_reused(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 1})
    _folder(root, tmp_path / "cache").dataset("train")
    path = root / "train" / "images" / "img001.png"
    Image.fromarray(np.full((40, 48, 3), 7, np.uint8)).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    capsys.readouterr()
    cache = _folder(root, tmp_path / "cache").source("train")
    assert "1 samples decoded, 2 unchanged" in capsys.readouterr().out
    assert (cache.read(1)[0] == 7).all()
    _assert_cache_matches_decoding(cache)


@pytest.mark.parametrize(
    ("bad_mask", "message"),
    [
        ("img002.png", r"train/masks/img002\.png: mask has values \[9\]"),
        ("img002.jpg", r"train/masks/img002\.jpg: mask is stored as JPEG, a lossy format"),
    ],
)
def test_a_bad_mask_is_refused_by_name_when_the_cache_is_built(tmp_path, bad_mask, message):
    # Cached samples are not checked again when read: the check happens once, here.
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 1})
    (root / "train/masks/img002.png").unlink()
    Image.fromarray(np.full((40, 48), 9 if bad_mask.endswith("png") else 1, np.uint8)).save(
        root / "train/masks" / bad_mask
    )
    with pytest.raises(DataError, match=message):
        _folder(root, tmp_path / "cache").source("train")


def test_removed_and_added_files_change_the_cached_samples(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 1})
    assert len(_folder(root, tmp_path / "cache").source("train")) == 3
    for sub in ("images", "masks"):
        (root / "train" / sub / "img000.png").unlink()
    cache = _folder(root, tmp_path / "cache").source("train")
    assert [n.rsplit("/", 1)[-1] for n in cache.names] == ["img001.png", "img002.png"]
    extra = write_folder_dataset(tmp_path / "extra", {"train": 1}, seed=5)
    for sub in ("images", "masks"):
        (extra / "train" / sub / "img000.png").rename(root / "train" / sub / "img009.png")
    cache = _folder(root, tmp_path / "cache").source("train")
    assert len(cache) == 3 and cache.names[-1].endswith("img009.png")
    _assert_cache_matches_decoding(cache)


def test_settings_that_change_decoding_get_their_own_cache(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 1})
    a = _folder(root, tmp_path / "cache").source("train")
    b = _folder(root, tmp_path / "cache", num_classes=256, ignore_index=300)
    b = b.source("train")  # 255 is a class here
    assert a.directory != b.directory
    assert b.mask_dtype == np.int16  # 300 does not fit in uint8
    assert b.read(0)[1].dtype == torch.int16 and (b.read(0)[1][0] == 255).all()
    c = _folder(root, tmp_path / "cache", exif_orientation="apply").source("train")
    assert c.directory not in (a.directory, b.directory)  # rotated photos decode differently


def test_worker_processes_read_the_cache_without_receiving_its_pixels(tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 4, "val": 1})
    cache = _folder(root, tmp_path / "cache").source("val")
    cache.read(0)  # maps the file in this process
    assert len(pickle.dumps(cache)) < 4096  # the index and the file list, no pixels
    cache = _folder(root, tmp_path / "cache").source("train")
    loader = DataLoader(cache, batch_size=2, num_workers=2)  # the raw samples, untransformed
    images = torch.cat([b["image"] for b in loader])
    assert torch.equal(images, torch.stack([cache.dataset.load(i)[0] for i in range(4)]))


def test_unwritable_cache_dir_names_the_option(tmp_path, monkeypatch):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 1})
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"data\.cache_dir: cannot write"):
        _folder(root, tmp_path / "file" / "cache").source("train")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DataError, match=r"data\.cache_dir: no space left"):
        _folder(root, tmp_path / "cache").source("train")


def test_fit_through_the_cli_builds_and_uses_the_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    cli = main(
        ["fit", *TINY, "--trainer.fast_dev_run", "1", "--data.init_args.cache_dir", str(cache_dir)]
    )
    assert isinstance(cli.datamodule.train_dataset().source, DecodedCache)
    built = sorted(p.name.split("-")[0] for p in cache_dir.iterdir() if p.is_dir())
    assert built == ["train", "val"]
    assert all((p / "index.json").is_file() for p in cache_dir.iterdir() if p.is_dir())


def test_cache_command_builds_ahead_of_time(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 2})
    config = tmp_path / "exp.yaml"
    data = {"root": str(root), "num_classes": 3, "cache_dir": str(tmp_path / "cache")}
    config.write_text(
        yaml.safe_dump({"data": {"class_path": "seglab.FolderDataModule", "init_args": data}})
    )
    main(["cache", "--config", str(config), "--splits", "[train, val]"])  # status 0
    assert "train: 3 samples cached" in capsys.readouterr().out
    dataset = FolderDataModule(str(root), num_classes=3).source("val")
    cache = open_cache(dataset, tmp_path / "cache", "val", build=False)  # no rebuild needed
    assert len(cache) == 2


def test_data_pipeline_benchmark_quick_mode(capsys):
    # The benchmark itself (bench/data_pipeline.py) on tiny images: every pipeline runs and reports.
    import runpy

    bench = runpy.run_path(str(REPO / "bench" / "data_pipeline.py"))
    bench["main"](["--quick", "--cases", "small", "--no-albumentations"])
    out = capsys.readouterr().out
    assert "small_72x96_crop48x48_seglab: " in out and "samples/s" in out
    assert "small ratio cached/decode: " in out
