"""Per-sample class pixel counts of a split, checked against counts made by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset

from seglab import FolderDataModule
from seglab.data.stats import class_pixel_counts, label_counts

IGNORE = 255


def _write(root, split: str, masks: list[np.ndarray]) -> None:
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    for i, mask in enumerate(masks):
        image = np.stack([mask * 40 % 256] * 3, axis=-1).astype(np.uint8)
        Image.fromarray(image).save(root / split / "images" / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"{i:03d}.png")


@pytest.fixture
def data(tmp_path):
    """Masks of classes 0..2 with ignore pixels, and class 3 in the first train sample only."""
    rng = np.random.default_rng(0)
    masks = {
        split: [rng.integers(0, 3, (24, 32)) for _ in range(n)]
        for split, n in [("train", 3), ("val", 2)]
    }
    for mask in masks["train"] + masks["val"]:
        mask[:2] = IGNORE
    masks["train"][0][5:9, 5:9] = 3
    for split, split_masks in masks.items():
        _write(tmp_path / "data", split, split_masks)
    return tmp_path / "data", masks


def _by_hand(masks: list[np.ndarray], num_classes: int = 4) -> torch.Tensor:
    rows = [np.bincount(m[m != IGNORE].ravel(), minlength=num_classes) for m in masks]
    return torch.from_numpy(np.stack(rows)).long()


@pytest.mark.parametrize("cached", [False, True])
def test_counts_equal_counts_by_hand(tmp_path, data, cached):
    root, masks = data
    cache = str(tmp_path / "cache") if cached else None
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0, cache_dir=cache)
    counts = class_pixel_counts(dm.dataset("train"))
    assert counts.dtype == torch.int64 and counts.shape == (3, 4)
    assert torch.equal(counts, _by_hand(masks["train"]))
    assert counts[0, 3] == 16 and counts[1:, 3].sum() == 0


def test_a_concatenation_gives_its_samples_rows_in_order(data):
    root, masks = data
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0)
    both = ConcatDataset([dm.dataset("train"), dm.dataset("val")])
    expected = _by_hand(masks["train"] + masks["val"])
    assert torch.equal(class_pixel_counts(both), expected)
    assert torch.equal(class_pixel_counts(both, num_workers=2), expected)


def test_median_frequency_weights_from_the_column_sums(data):
    root, _ = data
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0)
    total = class_pixel_counts(dm.dataset("train")).sum(0).double()
    freq = total / total.sum()
    weight = freq.median() / freq
    assert weight.argmax() == 3 and weight[3] > 10  # the rare class weighs most


def test_label_counts_leave_out_ignore_index_wherever_it_is():
    mask = torch.tensor([[0, 1, 1], [2, -1, 5]])
    assert label_counts(mask, ignore_index=-1, minlength=3).tolist() == [1, 2, 1, 0, 0, 1]
    no_negative = mask.clamp(min=0)  # [[0, 1, 1], [2, 0, 5]]
    assert label_counts(no_negative, ignore_index=5, minlength=6).tolist() == [2, 2, 1, 0, 0, 0]
    assert label_counts(no_negative, ignore_index=1).tolist() == [2, 0, 1, 0, 0, 1]
