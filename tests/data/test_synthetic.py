import pytest
import torch

from seglab import SyntheticDataModule
from seglab.data.datasets.synthetic import CLASS_NAMES
from seglab.data.stats import class_pixel_counts
from seglab.errors import ConfigError


def test_scenes_are_deterministic_per_seed_and_differ_across_seeds_and_splits():
    a = SyntheticDataModule(image_size=48, num_workers=0).dataset("val")[3]
    b = SyntheticDataModule(image_size=48, num_workers=0).dataset("val")[3]
    c = SyntheticDataModule(image_size=48, seed=1, num_workers=0).dataset("val")[3]
    d = SyntheticDataModule(image_size=48, num_workers=0).dataset("test")[3]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["mask"], c["mask"]) and not torch.equal(a["mask"], d["mask"])


def test_scenes_show_several_shape_classes_over_the_split():
    ds = SyntheticDataModule(image_size=64, num_workers=0).dataset("val")
    seen = torch.zeros(len(CLASS_NAMES), dtype=torch.long)
    for i in range(32):
        seen += torch.bincount(ds[i]["mask"].flatten(), minlength=len(CLASS_NAMES))
    assert (seen > 0).all()
    assert seen[0] < seen.sum() * 0.9  # shapes cover a real share of the pixels


def test_street_scenes_have_rare_thin_classes():
    """The rare-class benchmark's data: poles and signs under 1% of the pixels each, sky,
    buildings and road most of them; the same scenes for the same seed."""
    data = SyntheticDataModule(scene="street", image_size=96, num_train=64, num_workers=0)
    assert data.class_names == ["sky", "building", "road", "car", "pole", "sign"]
    counts = class_pixel_counts(data.dataset("train")).sum(0).double()
    share = dict(zip(data.class_names, (counts / counts.sum()).tolist(), strict=True))
    assert 0 < share["pole"] < 0.01 and 0 < share["sign"] < 0.01
    assert share["sky"] + share["building"] + share["road"] > 0.9
    again = SyntheticDataModule(scene="street", image_size=96, num_workers=0)
    assert torch.equal(again.source("train").read(5)[1], data.source("train").read(5)[1])


def test_an_unknown_scene_is_refused_by_name():
    with pytest.raises(
        ConfigError, match=r"data.scene must be one of shapes, street, got 'streets'"
    ):
        SyntheticDataModule(scene="streets")
