"""The shared data module: loader settings reach the DataLoaders it builds; downloads have their own
hook, so a module that downloads keeps the cache pre-build."""

from __future__ import annotations

from pathlib import Path

import pytest

from seglab import DataError, SegmentationDataModule, SyntheticDataModule
from seglab.data.cache import DecodedCache
from seglab.data.checks import check_data
from seglab.data.datamodule import list_images
from seglab.data.datasets.folder import FolderDataset, match_files
from tests.conftest import write_folder_dataset
from tests.data.awkward_files import broken_link


def test_worker_settings_reach_the_training_loader():
    dm = SyntheticDataModule(
        image_size=16, num_workers=2, prefetch_factor=4, persistent_workers=True
    )
    loader = dm.train_dataloader()
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 4, True)


def test_without_workers_there_is_nothing_to_prefetch_or_keep_alive():
    loader = SyntheticDataModule(image_size=16, num_workers=0, prefetch_factor=4).val_dataloader()
    assert loader.prefetch_factor is None and not loader.persistent_workers


def test_a_bad_prefetch_factor_names_the_option():
    with pytest.raises(ValueError, match=r"data\.prefetch_factor"):
        SyntheticDataModule(image_size=16, prefetch_factor=0)


def test_predict_dir_lists_its_images_and_names_a_broken_link(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]  # other files passed over
    target = broken_link(tmp_path / "c.png")
    with pytest.raises(DataError, match=rf"c\.png: broken symbolic link to {target}"):
        list_images(tmp_path)


class Downloading(SegmentationDataModule):
    """A user's data module whose files are fetched on first use: it overrides ``download_data``
    (and ``make_dataset``), nothing else."""

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.num_classes = 3
        self.class_names = ["a", "b", "c"]
        self.downloads = 0

    def download_data(self) -> None:
        if not (self.root / "val").is_dir():
            self.downloads += 1
            write_folder_dataset(self.root, {"train": 3, "val": 2})

    def make_dataset(self, split: str) -> FolderDataset:
        pairs, problems = match_files(self.root / split / "images", self.root / split / "masks")
        return FolderDataset(pairs, self.num_classes, problems=problems)


def test_a_module_that_downloads_still_gets_its_caches_built_by_prepare_data(tmp_path):
    cache = str(tmp_path / "cache")
    dm = Downloading(str(tmp_path / "data"), cache_dir=cache, num_workers=0, batch_size=2)
    dm.prepare_data()  # what Lightning runs once per node before setup
    assert dm.downloads == 1
    built = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert built == ["train", "val"]
    assert all((p / "index.json").is_file() for p in (tmp_path / "cache").iterdir() if p.is_dir())
    dm.setup("fit")
    assert isinstance(dm.source("train"), DecodedCache) and len(dm.source("val")) == 2
    assert dm.downloads == 1  # once per data module, not once per split


def test_commands_without_a_trainer_download_before_they_list_a_split(tmp_path):
    dm = Downloading(str(tmp_path / "data"), num_workers=0)
    reports = check_data(dm, ["train", "val"])
    assert dm.downloads == 1 and (reports["train"].samples, reports["val"].samples) == (3, 2)
    assert not reports["train"].problems and not reports["val"].problems
    fresh = Downloading(str(tmp_path / "other"), num_workers=0, crop_size=16, batch_size=2)
    assert next(iter(fresh.train_dataloader()))["image"].shape == (2, 3, 16, 16)
    assert fresh.downloads == 1
