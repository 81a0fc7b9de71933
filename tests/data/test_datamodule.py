"""Loader settings of the shared data module reach the DataLoaders it builds."""

from __future__ import annotations

import pytest

from seglab import DataError, SyntheticDataModule
from seglab.data.datamodule import list_images
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
