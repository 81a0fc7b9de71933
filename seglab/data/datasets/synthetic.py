"""Procedurally generated scenes: the embedded default dataset, no download needed.

``shapes`` (the quickstart's): each image shows a few shapes (circle, square, triangle, ring, cross)
at random positions, sizes and rotations on a textured, noisy background; later shapes occlude
earlier ones. Every shape class has its own band of saturated hues over pale or dark backgrounds of
any hue; telling a ring from a circle or a square from a cross needs shape as well as colour.

``street``: a street-scene stand-in with the class imbalance of CamVid or Cityscapes: sky, buildings
and road cover most pixels, a few cars less, and thin poles (one or two pixels wide, coloured like
the buildings behind them) and small signs on some of them well under 1% each: the rare, thin
classes that a plain cross-entropy learns last (``bench/rare_classes.py``).

Sample ``i`` of a split is a pure function of ``(seed, split, i)``: the same on every run and
worker.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.base import SegmentationDataset
from seglab.errors import ConfigError

CLASS_NAMES = ("background", "circle", "square", "triangle", "ring", "cross")
STREET_CLASSES = ("sky", "building", "road", "car", "pole", "sign")
Scene = Literal["shapes", "street"]
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


def generate_street(size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One street scene ``(image uint8 (3, size, size), mask uint8 (size, size))``."""

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(rand(1))

    ys = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
    xs = torch.arange(size, dtype=torch.float32)[None, :].expand(size, size)
    sky = _hsv_to_rgb(uniform(0.5, 0.65), uniform(0.1, 0.5), uniform(0.6, 0.95))
    image = sky[:, None, None] * (1 - 0.3 * ys / size)  # brighter towards the top
    mask = torch.zeros(size, size, dtype=torch.uint8)
    horizon = int(size * uniform(0.4, 0.55))
    x = 0
    while x < size:  # a row of buildings on the horizon, each its own colour and height
        width = int(size * uniform(0.12, 0.35)) + 1
        top = int(size * uniform(0.05, 0.35))
        wall = _hsv_to_rgb(uniform(0.0, 0.15), uniform(0.1, 0.4), uniform(0.3, 0.7))
        region = (ys >= top) & (ys < horizon) & (xs >= x) & (xs < x + width)
        image = torch.where(region, wall[:, None, None], image)
        mask[region] = 1
        x += width
    road = (ys >= horizon).expand(size, size)
    image = torch.where(road, (0.25 + 0.15 * rand(1)) * torch.ones(3, 1, 1), image)
    mask[road] = 2
    for _ in range(int(torch.randint(0, 4, (1,), generator=generator))):
        w, h = int(size * uniform(0.12, 0.3)), int(size * uniform(0.06, 0.12))
        cx, bottom = int(size * uniform(0.0, 1.0)), int(uniform(horizon + h, size))
        region = (ys >= bottom - h) & (ys < bottom) & (xs >= cx - w // 2) & (xs < cx + w // 2)
        paint = _hsv_to_rgb(float(rand(1)), uniform(0.5, 1.0), uniform(0.4, 1.0))
        image = torch.where(region, paint[:, None, None], image)
        mask[region] = 3
    for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):
        px, width = int(size * uniform(0.05, 0.95)), 1 + int(rand(1) < 0.5)
        foot, height = int(uniform(horizon, size * 0.9)), int(size * uniform(0.25, 0.45))
        pole = (xs >= px) & (xs < px + width) & (ys >= foot - height) & (ys < foot)
        grey = _hsv_to_rgb(uniform(0.0, 0.15), uniform(0.0, 0.2), uniform(0.35, 0.6))
        image = torch.where(pole, grey[:, None, None], image)
        mask[pole] = 4
        if rand(1) < 0.6:  # a sign on the pole's top
            side, top = int(size * uniform(0.03, 0.06)) + 2, foot - height
            sign = (xs >= px - side // 2) & (xs < px + width + side // 2)
            sign = sign & (ys >= top - side) & (ys < top)
            colour = _hsv_to_rgb(
                float(torch.randint(0, 3, (1,), generator=generator)) / 3, 0.9, 0.9
            )
            image = torch.where(sign, colour[:, None, None], image)
            mask[sign] = 5
    image = image + 0.04 * torch.randn(3, size, size, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), mask


class SyntheticDataset(SegmentationDataset):
    def __init__(
        self, split: Split, length: int, size: int, seed: int = 0, scene: Scene = "shapes", **kwargs
    ) -> None:
        super().__init__(num_classes=len(CLASS_NAMES), **kwargs)
        self.split, self.length, self.size, self.seed = split, length, size, seed
        self.scene = scene

    def __len__(self) -> int:
        return self.length

    def source_files(self, index: int) -> list:
        return []  # generated: a cache is keyed by (split, length, size, seed) alone

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        g = torch.Generator().manual_seed(self.seed * 7_919 + _SPLIT_OFFSET[self.split] + index)
        generate = generate_street if self.scene == "street" else generate_scene
        image, mask = generate(self.size, g)
        return image, mask, f"synthetic/{self.split}/{index:06d}"


class SyntheticDataModule(SegmentationDataModule):
    """Synthetic scenes (6 classes), generated on the fly.

    Args:
        image_size: side of the square images.
        scene: ``shapes`` (the quickstart's) or ``street`` (rare, thin classes).
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
        scene: Scene = "shapes",
        **kwargs,
    ) -> None:
        if scene not in ("shapes", "street"):
            raise ConfigError(f"data.scene must be one of shapes, street, got {scene!r}")
        kwargs.setdefault("crop_size", image_size)
        super().__init__(**kwargs)
        self.image_size = image_size
        self.lengths = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.scene = scene
        self.num_classes = len(CLASS_NAMES)
        self.class_names = list(STREET_CLASSES if scene == "street" else CLASS_NAMES)

    def make_dataset(self, split: Split) -> SyntheticDataset:
        return SyntheticDataset(
            split,
            self.lengths[split],
            self.image_size,
            self.seed,
            self.scene,
            ignore_index=self.ignore_index,
        )
