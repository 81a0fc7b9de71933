"""Loader settings of the shared data module reach the DataLoaders it builds."""

from __future__ import annotations

import pytest

from seglab import SyntheticDataModule


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
