"""Per-sample class pixel counts of training data, checked against counts made by hand: seglab's own
training sets (whole samples, never the random crops; from the decoded cache or not), any other
map-style dataset, and the training set of any data module found by ``training_set``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset

from seglab import FolderDataModule
from seglab.data.cache import DecodedCache
from seglab.data.stats import class_pixel_counts, label_counts, training_set
from seglab.errors import ConfigError, DataError

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
def test_the_training_set_counts_its_whole_masks_not_the_random_crops(tmp_path, data, cached):
    root, masks = data
    cache = str(tmp_path / "cache") if cached else None
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0, crop_size=8, cache_dir=cache)
    train = dm.train_dataset()
    assert train[0]["mask"].shape == (8, 8)  # what training sees: 8x8 crops of 24x32 masks
    assert isinstance(train.source, DecodedCache) == cached
    counts = class_pixel_counts(train)
    assert counts.dtype == torch.int64 and counts.shape == (3, 4)
    assert torch.equal(counts, _by_hand(masks["train"]))
    assert counts[0, 3] == 16 and counts[1:, 3].sum() == 0
    assert torch.equal(class_pixel_counts(dm.dataset("val")), _by_hand(masks["val"]))
    assert torch.equal(class_pixel_counts(train, num_workers=2), _by_hand(masks["train"]))


def test_a_concatenation_gives_its_samples_rows_in_order(data):
    root, masks = data
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0)
    both = ConcatDataset([dm.train_dataset(), dm.source("val")])  # a wrapper and a raw dataset
    expected = _by_hand(masks["train"] + masks["val"])
    assert torch.equal(class_pixel_counts(both), expected)
    assert torch.equal(class_pixel_counts(both, num_workers=2), expected)


def test_median_frequency_weights_from_the_column_sums(data):
    root, _ = data
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0)
    total = class_pixel_counts(training_set(dm)).sum(0).double()
    freq = total / total.sum()
    weight = freq.median() / freq
    assert weight.argmax() == 3 and weight[3] > 10  # the rare class weighs most


def test_label_counts_leave_out_ignore_index_wherever_it_is():
    mask = torch.tensor([[0, 1, 1], [2, -1, 5]])
    assert label_counts(mask, ignore_index=-1, minlength=3).tolist() == [1, 2, 1, 0, 0, 1]
    no_negative = mask.clamp(min=0)  # [[0, 1, 1], [2, 0, 5]]
    assert label_counts(no_negative, ignore_index=5, minlength=6).tolist() == [2, 2, 1, 0, 0, 0]
    assert label_counts(no_negative, ignore_index=1).tolist() == [2, 0, 1, 0, 0, 1]


class Pairs(Dataset):
    """Anyone's map-style dataset: ``(image, mask)`` tuples, or dicts with more keys than ours."""

    def __init__(self, masks: list[np.ndarray], as_dict: bool = False) -> None:
        self.masks, self.as_dict = masks, as_dict

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int):
        mask = torch.from_numpy(self.masks[index])
        image = torch.zeros(3, *mask.shape[-2:])
        if self.as_dict:  # torchgeo's style: (1, H, W) int32 masks, extra keys
            return {"image": image, "mask": mask[None].int(), "bounds": index}
        return image, mask


@pytest.mark.parametrize("as_dict", [False, True])
def test_any_map_style_dataset_is_counted_as_it_returns_its_samples(data, as_dict):
    _, masks = data
    dataset = Pairs(masks["train"], as_dict)
    expected = _by_hand(masks["train"])
    assert torch.equal(class_pixel_counts(dataset), expected)  # width: the largest id + 1
    assert torch.equal(class_pixel_counts(dataset, num_workers=2), expected)
    wider = class_pixel_counts(dataset, num_classes=6)
    assert wider.shape == (3, 6) and torch.equal(wider[:, :4], expected) and wider[:, 4:].sum() == 0
    # the ignore index is the caller's: 0 counted nowhere, 255 now a class
    by_hand = [np.bincount(m[m != 0].ravel(), minlength=256) for m in masks["train"]]
    assert torch.equal(class_pixel_counts(dataset, ignore_index=0), torch.tensor(np.stack(by_hand)))


def test_a_mask_value_beyond_num_classes_is_an_error_not_a_dropped_count(data):
    _, masks = data
    with pytest.raises(
        DataError,
        match=r"sample 0 has mask values from 0 to 3; expected class ids 0\.\.2 or ignore_index",
    ):
        class_pixel_counts(Pairs(masks["train"]), num_classes=3)
    with pytest.raises(DataError, match=r"expected a dict with a 'mask' key or an \(image, mask\)"):
        class_pixel_counts([torch.zeros(3, 4, 4)])


class AttributeModule:
    """A data module in torchgeo's style: ``train_dataset`` is an attribute set in ``setup``."""

    def __init__(self, dataset) -> None:
        self.train_dataset = None
        self.dataset = dataset

    def setup(self, stage: str) -> None:
        self.train_dataset = self.dataset


class MethodModule:
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def train_dataset(self):
        return self.dataset


def test_training_set_is_found_as_an_attribute_or_a_method(data):
    root, masks = data
    dataset = Pairs(masks["train"])
    attribute = AttributeModule(dataset)
    attribute.setup("fit")
    assert training_set(attribute) is dataset
    assert training_set(MethodModule(dataset)) is dataset
    dm = FolderDataModule(str(root), num_classes=4, num_workers=0)
    assert training_set(dm) is dm.train_dataset()  # seglab's data modules: the method
    assert torch.equal(class_pixel_counts(training_set(attribute)), _by_hand(masks["train"]))


def test_a_data_module_without_a_training_set_is_one_clear_config_error(data):
    with pytest.raises(ConfigError) as e:
        training_set(object())
    message = str(e.value)
    assert "\n" not in message and message.startswith("object has no training set")
    assert "`train_dataset` attribute holding a Dataset" in message
    assert "`train_dataset()` method returning one" in message
    not_set_up = AttributeModule(Pairs([]))
    with pytest.raises(ConfigError, match=r"^AttributeModule has no training set .*\(got none\)$"):
        training_set(not_set_up)
