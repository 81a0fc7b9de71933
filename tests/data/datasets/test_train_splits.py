"""``data.train_splits`` on every dataset module, in each one's real on-disk layout: the training
set is the listed splits one after the other, each sample once; validation stays on ``val``."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import ConcatDataset

from seglab import (
    ADE20KDataModule,
    CamVidDataModule,
    CityscapesDataModule,
    DataError,
    FolderDataModule,
    OxfordPetsDataModule,
    SyntheticDataModule,
    VOCDataModule,
)
from seglab.cli import main
from seglab.data.cache import DecodedCache
from seglab.data.checks import check_data
from tests.conftest import TINY, write_folder_dataset
from tests.data.datasets.fixtures import (
    write_ade20k,
    write_camvid,
    write_cityscapes,
    write_pets,
    write_voc,
)

MODULES = {  # writer of the on-disk layout (None: generated), module, its own arguments
    "folder": (
        lambda r: write_folder_dataset(r, {"train": 4, "val": 3, "test": 2}),
        FolderDataModule,
    ),
    "synthetic": (None, SyntheticDataModule),
    "pets": (lambda r: write_pets(r, trainval=10, test=3), OxfordPetsDataModule),
    "voc": (lambda r: write_voc(r, train=4, val=3), VOCDataModule),
    "cityscapes": (lambda r: write_cityscapes(r, train=4, val=3), CityscapesDataModule),
    "ade20k": (lambda r: write_ade20k(r, train=4, val=3), ADE20KDataModule),
    "camvid": (lambda r: write_camvid(r, train=4, val=3, test=2), CamVidDataModule),
}
TEST_IS_VAL = ("voc", "cityscapes", "ade20k")  # their test labels are not public: test reads val


def _data(name: str, tmp_path, **kwargs):
    writer, module = MODULES[name]
    kwargs = {"crop_size": 32, "batch_size": 2, "num_workers": 0, **kwargs}
    if writer is None:
        return module(image_size=48, num_train=4, num_val=3, num_test=2, **kwargs)
    extra = {"num_classes": 3} if name == "folder" else {}
    return module(str(writer(tmp_path / name)), **extra, **kwargs)


def _names(dataset) -> list[str]:
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    return [part.source.read(i)[2] for part in parts for i in range(len(part))]


@pytest.mark.parametrize("name", MODULES)
def test_train_and_val_are_trained_on_once_each_and_validation_stays_on_val(tmp_path, name):
    dm = _data(name, tmp_path, train_splits=["train", "val"])
    with pytest.warns(UserWarning, match=r"trains on the validation samples .*optimistic"):
        dm.setup("fit")
    train, val = _names(dm.dataset("train")), _names(dm.dataset("val"))
    assert _names(dm.train_dataset()) == train + val  # each sample once, in split order
    assert len(set(train + val)) == len(train) + len(val)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[-2:] == (32, 32)  # training crops, also of val samples
    loader = dm.val_dataloader()
    assert loader.dataset is dm.dataset("val") and len(loader.dataset) == len(val)
    assert next(iter(loader))["image"].shape[-2:] != (32, 32)  # whole images


@pytest.mark.parametrize("name", MODULES)
def test_by_default_only_train_is_trained_on_and_nothing_warns(tmp_path, name):
    dm = _data(name, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dm.setup("fit")
    assert dm.train_dataset() is dm.dataset("train")


@pytest.mark.parametrize("name", TEST_IS_VAL)
def test_splits_holding_the_same_samples_are_refused_and_test_counts_as_validation(tmp_path, name):
    dm = _data(name, tmp_path, train_splits=["val", "test"])
    with pytest.raises(DataError, match=r"the val and test splits hold the same samples"):
        dm.setup("fit")
    dm = _data(name, tmp_path, train_splits=["train", "test"])
    with pytest.warns(UserWarning, match=r"validation samples \(of test\)"):
        dm.setup("fit")


@pytest.mark.parametrize("name", ["folder", "pets", "camvid", "synthetic"])
def test_a_separate_test_split_can_be_trained_on_without_warning(tmp_path, name):
    dm = _data(name, tmp_path, train_splits=["train", "test"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dm.setup("fit")
    assert len(dm.train_dataset()) == len(dm.dataset("train")) + len(dm.dataset("test"))


@pytest.mark.parametrize("splits", [[], ["train", "train"], ["train", "holdout"]])
def test_bad_train_splits_name_the_option(splits):
    with pytest.raises(ValueError, match=r"data\.train_splits must list distinct splits"):
        SyntheticDataModule(image_size=16, train_splits=splits)


def test_cached_val_samples_are_decoded_once_for_training_and_validation(tmp_path):
    dm = _data("folder", tmp_path, train_splits=["train", "val"], cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning):
        dm.setup("fit")
    training_val = dm.train_dataset().datasets[1]
    assert training_val is not dm.dataset("val")  # another transform ...
    assert training_val.source is dm.dataset("val").source  # ... over the same cache
    assert isinstance(training_val.source, DecodedCache)


def test_check_data_still_reports_each_split_on_its_own(tmp_path):
    dm = _data("camvid", tmp_path, train_splits=["train", "val"])
    reports = check_data(dm, ["train", "val"])
    assert not reports["train"].problems and not reports["val"].problems
    assert (reports["train"].samples, reports["val"].samples) == (4, 3)  # not train + val
    pixels = 48 * 64
    assert 3 * pixels < reports["train"].pixels.sum() <= 4 * pixels


def test_through_the_config(tmp_path):
    with pytest.warns(UserWarning, match="optimistic"):
        cli = main(
            [
                "fit",
                *TINY,
                "--trainer.fast_dev_run",
                "1",
                "--data.init_args.train_splits",
                "[train, val]",
            ]
        )
    assert len(cli.datamodule.train_dataset()) == 4 + 3 and cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
