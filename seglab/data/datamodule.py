"""The ``LightningDataModule`` base shared by every dataset: loaders, transforms and their settings."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from seglab.data.dataset import SegmentationDataset
from seglab.data.io import DataError
from seglab.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    eval_transform,
    train_transform,
)

Split = Literal["train", "val", "test"]


class SegmentationDataModule(L.LightningDataModule):
    """Base of seglab's data modules. Subclasses set ``num_classes`` and ``class_names`` in
    ``__init__`` and implement ``make_dataset(split, transform)``.

    Args:
        batch_size: training batch size per process.
        eval_batch_size: validation/test/predict batch size (default: ``batch_size``). Images of
            different sizes need 1.
        num_workers: data loading processes per training process.
        crop_size: training crop, an int or ``[height, width]``.
        augment: training augmentation settings.
        mean, std: per-channel normalisation of images scaled to [0, 1].
        ignore_index: mask value that marks pixels to ignore (linked from the model by the CLI).
        pin_memory: page-locked batches for faster host-to-device copies.
        persistent_workers: keep loader processes alive between epochs.
    """

    num_classes: int
    class_names: list[str]

    def __init__(
        self,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        crop_size: int | tuple[int, int] = 512,
        augment: Augment | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        ignore_index: int = 255,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.augment = augment or Augment()
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = ignore_index
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.datasets: dict[str, Dataset] = {}

    def make_dataset(self, split: Split, transform) -> SegmentationDataset:
        raise NotImplementedError

    def dataset(self, split: Split) -> Dataset:
        """The split's dataset with its transforms, built once."""
        if split not in self.datasets:
            if split == "train":
                transform = train_transform(
                    self.crop_size, self.augment, self.ignore_index, self.mean, self.std
                )
            else:
                transform = eval_transform(self.mean, self.std)
            self.datasets[split] = self.make_dataset(split, transform)
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        splits = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
        }
        for split in splits[stage]:
            if len(self.dataset(split)) == 0:
                raise DataError(f"the {split} split of {type(self).__name__} is empty")
        if stage == "fit" and len(self.dataset("train")) < self.batch_size:
            raise DataError(
                f"the train split has {len(self.dataset('train'))} samples, fewer than "
                f"data.batch_size={self.batch_size}: no full batch to train on"
            )

    def _loader(self, split: Split, train: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,  # a batch of one breaks BatchNorm after global pooling (ASPP, PSP)
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=None if train else collate_same_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def collate_same_size(samples: list[dict]) -> dict:
    """Evaluation batches keep images at their own size, so they must all be the same size."""
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        names = ", ".join(f"{s['name']} {tuple(s['image'].shape[-2:])}" for s in samples[:4])
        raise DataError(
            f"evaluation batch mixes image sizes ({names}); set data.eval_batch_size: 1 "
            "for datasets whose images differ in size"
        )
    return default_collate(samples)
