"""Tiny modules and loaders for the callback tests."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from seglab import SegmentationModule


@pytest.fixture
def make_module():
    def make(**kwargs) -> SegmentationModule:
        torch.manual_seed(0)
        kwargs.setdefault("num_classes", 3)
        return SegmentationModule(arch="unet", encoder_name="tu-test_resnet", **kwargs)

    return make


def loader(n: int = 4, size: int = 32, batch_size: int = 2) -> DataLoader:
    """``(image, mask)`` tuples, as someone else's data module would give them."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    masks = (images[:, 0] > 0).to(torch.uint8) + (images[:, 1] > 1).to(torch.uint8)
    return DataLoader(TensorDataset(images, masks), batch_size=batch_size)


def trainer(**kwargs) -> L.Trainer:
    kwargs.setdefault("enable_checkpointing", False)
    kwargs.setdefault("max_epochs", 1)
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
