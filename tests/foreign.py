"""Code as someone else's Lightning project would write it: no seglab base classes.

``ShapesDataModule`` serves ``(image, mask)`` tuples of float images (already normalised, its own
way) and int64 masks, like a typical hand-written data module. With ``expose_classes`` it has
``num_classes``/``class_names`` attributes, without it the model's options must say them.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def shapes(count: int, size: int, num_classes: int, seed: int) -> TensorDataset:
    """Images whose first channel encodes the class of a square in the middle."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(count, size, size, dtype=torch.long)
    images = 0.1 * torch.randn(count, 3, size, size, generator=g)
    for i in range(count):
        c = int(torch.randint(1, num_classes, (1,), generator=g))
        lo, hi = size // 4, 3 * size // 4
        masks[i, lo:hi, lo:hi] = c
        images[i, 0, lo:hi, lo:hi] += c
    return TensorDataset(images, masks)


class ShapesDataModule(L.LightningDataModule):
    def __init__(
        self,
        num_train: int = 8,
        num_val: int = 7,
        batch_size: int = 2,
        size: int = 32,
        classes: int = 3,
        expose_classes: bool = True,
    ) -> None:
        super().__init__()
        self.train_set = shapes(num_train, size, classes, seed=0)
        self.val_set = shapes(num_val, size, classes, seed=1)
        self.batch_size = batch_size
        if expose_classes:
            self.num_classes = classes
            self.class_names = [f"c{i}" for i in range(classes)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


class BranchyNet(torch.nn.Module):
    """Someone's network with a branch its forward never runs (left over from an experiment)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.unused_branch = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
