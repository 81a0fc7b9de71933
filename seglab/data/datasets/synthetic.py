"""Procedurally generated scenes: the embedded default dataset, no download needed.

Each image shows a few shapes (circle, square, triangle, ring, cross) at random positions, sizes and
rotations on a textured, noisy background; later shapes occlude earlier ones. Every shape class has
its own band of saturated hues over pale or dark backgrounds of any hue; telling a ring from a circle
or a square from a cross needs shape as well as colour.
Sample ``i`` of a split is a pure function of ``(seed, split, i)``: the same on every run and worker.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.base import SegmentationDataset

CLASS_NAMES = ("background", "circle", "square", "triangle", "ring", "cross")
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_006}


def _hsv_to_rgb(h: float, s: float, v: float) -> Tensor:
    k = torch.tensor([5.0, 3.0, 1.0])
    k = (k + h * 6) % 6
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _inside(shape: int, u: Tensor, v: Tensor) -> Tensor:
    """Pixels inside a unit-size shape in its own (rotated, scaled) coordinates."""
    r2 = u * u + v * v
    if shape == 1:
        return r2 <= 1.0
    if shape == 2:
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if shape == 3:
        s3 = math.sqrt(3.0)
        return (v >= -0.5) & (s3 * u + v <= 1.0) & (-s3 * u + v <= 1.0)
    if shape == 4:
        return (r2 <= 1.0) & (r2 >= 0.36)
    return ((u.abs() <= 0.3) & (v.abs() <= 1.0)) | ((v.abs() <= 0.3) & (u.abs() <= 1.0))


def generate_scene(size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One ``(image uint8 (3, size, size), mask uint8 (size, size))`` pair."""

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32),
        torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )
    # Background: a random colour modulated by two gratings, plus noise.
    image = (
        _hsv_to_rgb(rand(1).item(), 0.35 * rand(1).item(), 0.2 + 0.8 * rand(1).item())[
            :, None, None
        ]
        .expand(3, size, size)
        .clone()
    )
    for _ in range(2):
        freq, angle, phase = 2 + 10 * rand(1).item(), math.pi * rand(1).item(), 6.3 * rand(1).item()
        wave = torch.sin(
            freq * 2 * math.pi / size * (xx * math.cos(angle) + yy * math.sin(angle)) + phase
        )
        image += 0.15 * wave * (rand(3)[:, None, None] - 0.5) * 2
    mask = torch.zeros(size, size, dtype=torch.uint8)
    for _ in range(int(torch.randint(2, 6, (1,), generator=generator))):
        shape = int(torch.randint(1, len(CLASS_NAMES), (1,), generator=generator))
        radius = size * (0.08 + 0.22 * rand(1).item())
        cx, cy = (size * rand(2)).tolist()
        theta = 2 * math.pi * rand(1).item()
        dx, dy = xx - cx, yy - cy
        u = (dx * math.cos(theta) + dy * math.sin(theta)) / radius
        v = (-dx * math.sin(theta) + dy * math.cos(theta)) / radius
        inside = _inside(shape, u, v)
        hue = (shape - 1) / (len(CLASS_NAMES) - 1) + 0.06 * (rand(1).item() - 0.5)
        colour = _hsv_to_rgb(hue % 1.0, 0.6 + 0.4 * rand(1).item(), 0.5 + 0.5 * rand(1).item())
        texture = 0.08 * torch.randn(3, size, size, generator=generator)
        image = torch.where(inside, colour[:, None, None] + texture, image)
        mask[inside] = shape
    image += 0.05 * torch.randn(3, size, size, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), mask


class SyntheticDataset(SegmentationDataset):
    def __init__(self, split: Split, length: int, size: int, seed: int = 0, **kwargs) -> None:
        super().__init__(num_classes=len(CLASS_NAMES), **kwargs)
        self.split, self.length, self.size, self.seed = split, length, size, seed

    def __len__(self) -> int:
        return self.length

    def source_files(self, index: int) -> list:
        return []  # generated: a cache is keyed by (split, length, size, seed) alone

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        g = torch.Generator().manual_seed(self.seed * 7_919 + _SPLIT_OFFSET[self.split] + index)
        image, mask = generate_scene(self.size, g)
        return image, mask, f"synthetic/{self.split}/{index:06d}"


class SyntheticDataModule(SegmentationDataModule):
    """Synthetic shapes scenes (6 classes), generated on the fly.

    Args:
        image_size: side of the square images.
        num_train, num_val, num_test: samples per split.
        seed: selects the scenes; the same seed gives the same data everywhere.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(
        self,
        image_size: int = 96,
        num_train: int = 512,
        num_val: int = 64,
        num_test: int = 64,
        seed: int = 0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("crop_size", image_size)
        super().__init__(**kwargs)
        self.image_size = image_size
        self.lengths = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.num_classes = len(CLASS_NAMES)
        self.class_names = list(CLASS_NAMES)

    def make_dataset(self, split: Split, transform) -> SyntheticDataset:
        return SyntheticDataset(
            split,
            self.lengths[split],
            self.image_size,
            self.seed,
            ignore_index=self.ignore_index,
            transform=transform,
        )
