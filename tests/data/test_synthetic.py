import torch

from seglab import SyntheticDataModule
from seglab.data.datasets.synthetic import CLASS_NAMES


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
