"""Class weights computed from the training masks of any data module whose training set can be
found, on the data side (``seglab.models.class_weights``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from seglab import SegmentationModule
from seglab.errors import ConfigError
from seglab.losses import CrossEntropyLoss


def _masks() -> torch.Tensor:
    """Two 4x4 masks of 3 classes. Mask 0: class 0 on 12 pixels, class 1 on 4. Mask 1: class 0 on
    6, class 2 on 8, and 2 ignored pixels (255)."""
    first = torch.zeros(4, 4, dtype=torch.long)
    first[0] = 1
    second = torch.full((4, 4), 2, dtype=torch.long)
    second[:2, :3] = 0
    second[3, 2:] = 255
    return torch.stack([first, second])


class AttributeDataModule(L.LightningDataModule):
    """torchgeo's style: the training set is an attribute, set in ``setup``; batches are tuples."""

    def setup(self, stage: str) -> None:
        masks = _masks()
        self.train_dataset = TensorDataset(torch.randn(len(masks), 3, 4, 4), masks)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=2)


def _module(rule: str) -> SegmentationModule:
    network = torch.nn.Conv2d(3, 3, 1)
    return SegmentationModule(
        network=network,
        num_classes=3,
        backbone_lr_mult=1.0,
        loss=CrossEntropyLoss(class_weights=rule),
    )


def _fit(module: SegmentationModule, data: L.LightningDataModule) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)


def test_median_frequency_of_a_training_set_held_as_an_attribute_by_hand():
    """freq_c = pixels of c / labelled pixels of the masks holding c: class 0 (12 + 6) / (16 + 14)
    = 3/5, class 1 4/16 = 1/4, class 2 8/14 = 4/7; the median is 4/7, weight_c = (4/7) / freq_c."""
    module = _module("median_frequency")
    _fit(module, AttributeDataModule())
    assert module.criterion.weight.tolist() == pytest.approx([20 / 21, 16 / 7, 1.0])


def test_inverse_frequency_by_hand():
    """Of 30 labelled pixels: class 0 18, class 1 4, class 2 8; weight_c = 1 / (3 freq_c), capped
    at 10: 30/54, 30/12, 30/24."""
    module = _module("inverse_frequency")
    _fit(module, AttributeDataModule())
    assert module.criterion.weight.tolist() == pytest.approx([30 / 54, 30 / 12, 30 / 24])


def test_a_data_module_without_a_training_set_is_named():
    class Loaders(L.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.randn(2, 3, 4, 4), _masks()), batch_size=2)

    with pytest.raises(ConfigError, match=r"median_frequency: Loaders has no training set"):
        _fit(_module("median_frequency"), Loaders())
