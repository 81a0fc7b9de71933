"""Rare-class sampling: samples and crops drawn as DAFormer's rule says, reproducibly, also under
DDP, through the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning import Trainer, seed_everything
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.trainer.states import RunningStage
from PIL import Image

from seglab import FolderDataModule
from seglab.cli import main
from seglab.data.augment import Augment
from seglab.data.cache import DecodedCache
from seglab.data.sampling import RareClassSampler, RareClassSampling
from seglab.data.stats import class_pixel_counts
from seglab.data.transforms import RandomScaleCrop
from tests.conftest import TINY

RARE = 2
NUM = 30


@pytest.fixture(scope="module")
def rare_root(tmp_path_factory):
    """30 samples of 48x48: classes 0 and 1 share every image; class 2 is a 4x4 patch in 3 of
    them."""
    root = tmp_path_factory.mktemp("rare")
    rng = np.random.default_rng(0)
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "masks").mkdir(parents=True)
    for i in range(NUM):
        mask = np.zeros((48, 48), np.uint8)
        mask[:, int(rng.integers(16, 32)) :] = 1
        if i < 3:
            y, x = rng.integers(0, 44, 2)
            mask[y : y + 4, x : x + 4] = RARE
        image = np.stack([mask * 100, mask * 50, rng.integers(0, 255, mask.shape)], -1)
        for split in ("train", "val") if i == 0 else ("train",):
            Image.fromarray(image.astype(np.uint8)).save(root / split / "images" / f"{i:03d}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i:03d}.png")
    return root


def _data(root, temperature: float | None, **kwargs) -> FolderDataModule:
    return FolderDataModule(
        str(root),
        num_classes=3,
        crop_size=16,
        batch_size=10,
        num_workers=0,
        augment=Augment(scale_range=(1.0, 1.0)),
        augment_on_device=True,  # the workers' share: scale and crop
        rare_class_sampling=None if temperature is None else RareClassSampling(temperature),
        **kwargs,
    )


def test_probabilities_follow_the_rule_by_hand():
    counts = torch.tensor([[6, 2, 0, 0], [8, 0, 0, 0], [4, 0, 4, 0]])  # class 3 never occurs
    class_prob, sample_prob, class_weights = RareClassSampling(0.5).probabilities(counts)
    freq = torch.tensor([18, 2, 4]) / 24
    expected = torch.softmax((1 - freq) / 0.5, 0)
    torch.testing.assert_close(class_prob[:3], expected.double())
    assert class_prob[3] == 0 and class_weights[3] == 0
    n_c = torch.tensor([3.0, 1.0, 1.0])
    torch.testing.assert_close(class_weights[:3], (expected / n_c).double())
    by_hand = [sum(expected[c] / n_c[c] for c in range(3) if counts[i, c] > 0) for i in range(3)]
    torch.testing.assert_close(sample_prob, torch.tensor(by_hand).double())
    assert abs(float(sample_prob.sum()) - 1) < 1e-9


def test_a_bad_temperature_names_the_option():
    with pytest.raises(ValueError, match=r"data\.rare_class_sampling\.temperature must be > 0"):
        RareClassSampling(0.0)


def _crops_with_rare_class(dm: FolderDataModule, epochs: int) -> float:
    loader = dm.train_dataloader()
    found = total = 0
    for epoch in range(epochs):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            found += int((batch["mask"] == RARE).flatten(1).any(1).sum())
            total += len(batch["mask"])
    return found / total


def test_samples_and_crops_of_a_rare_class_rise_to_what_the_rule_predicts(rare_root):
    seed_everything(0)
    dm = _data(rare_root, temperature=1.0)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, RareClassSampler) and len(sampler) == NUM  # epoch: the split's size
    counts = class_pixel_counts(dm.train_dataset())  # checked by hand in test_stats.py
    class_prob, sample_prob, _ = RareClassSampling(1.0).probabilities(counts)
    draws = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        draws += list(sampler)
    share = np.isin(draws, [0, 1, 2]).mean()  # samples 0-2 hold the rare class
    assert abs(share - float(sample_prob[:3].sum())) < 0.03
    assert share > 0.4  # uniform sampling: 0.1
    # every crop centred on a rare-class pixel shows it: at least P(rare) of the crops
    rare = _crops_with_rare_class(dm, epochs=10)
    assert class_prob[RARE] - 0.08 < rare < class_prob[RARE] + 0.15
    uniform = _crops_with_rare_class(_data(rare_root, temperature=None), epochs=10)
    assert uniform < 0.1 < 0.4 < rare


def test_the_crop_is_built_with_the_class_weights_of_the_sampling(rare_root, monkeypatch):
    # Sampling weights are counted first and given to RandomScaleCrop's constructor: nothing sets
    # them on the crop afterwards, and the training set has them before any loader exists.
    built = []
    init = RandomScaleCrop.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self.class_weights)
        self._built = True

    def refuse_poking(self, name, value):
        if name == "class_weights" and getattr(self, "_built", False):
            raise AssertionError("class_weights set on the crop after it was built")
        torch.nn.Module.__setattr__(self, name, value)

    monkeypatch.setattr(RandomScaleCrop, "__init__", record)
    monkeypatch.setattr(RandomScaleCrop, "__setattr__", refuse_poking)
    dm = _data(rare_root, temperature=1.0)
    crop = dm.train_dataset().transform.crop
    counts = class_pixel_counts(dm.train_dataset())
    _, sample_prob, class_weights = RareClassSampling(1.0).probabilities(counts)
    assert len(built) == 1 and built[0] is crop.class_weights
    torch.testing.assert_close(crop.class_weights, class_weights.float())
    sampler = dm.train_dataloader().sampler
    torch.testing.assert_close(sampler.weights, sample_prob)
    assert dm.train_dataset().transform.crop is crop and len(built) == 1  # built once
    # and it still centres crops on the drawn class: sample 0 holds the rare class's only pixels
    # in its image, and its crops show them far more often than a uniform crop would
    torch.manual_seed(0)
    rare = sum(bool((dm.train_dataset()[0]["mask"] == RARE).any()) for _ in range(200))
    torch.manual_seed(0)
    uniform = _data(rare_root, temperature=None).train_dataset()
    plain = sum(bool((uniform[0]["mask"] == RARE).any()) for _ in range(200))
    assert rare > 150 and rare > 2 * plain  # uniform: about a third of the crops


def test_same_seed_same_samples_and_crops(rare_root):
    def one_epoch():
        seed_everything(7)
        dm = _data(rare_root, temperature=0.05)
        return [(b["name"], b["mask"]) for b in dm.train_dataloader()]

    first, second = one_epoch(), one_epoch()
    assert [n for n, _ in first] == [n for n, _ in second]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, second, strict=True))


def test_lightning_wraps_the_sampler_for_ddp_and_the_ranks_share_one_draw(rare_root):
    dm = _data(rare_root, temperature=0.05)
    loader = dm.train_dataloader()
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    prepared = trainer._data_connector._prepare_dataloader(loader, True, RunningStage.TRAINING)
    assert isinstance(prepared.sampler, DistributedSamplerWrapper)
    # every process draws the same list; the wrapper gives each its half, none twice
    shares = []
    for rank in range(2):
        wrapper = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=rank, seed=0)
        wrapper.set_epoch(3)
        shares.append(list(wrapper))
    loader.sampler.set_epoch(3)
    assert sorted(shares[0] + shares[1]) == sorted(loader.sampler)
    assert len(shares[0]) == len(shares[1]) == NUM // 2


def test_through_the_config_with_the_cache_and_augment_on_device(tmp_path):
    cli = main(
        [
            "fit",
            *TINY,
            "--trainer.fast_dev_run",
            "2",
            "--data.init_args.rare_class_sampling.temperature",
            "0.1",
            "--data.init_args.augment_on_device",
            "true",
            "--data.init_args.cache_dir",
            str(tmp_path / "cache"),
        ]
    )
    dm = cli.datamodule
    assert isinstance(dm.train_dataloader().sampler, RareClassSampler)
    assert isinstance(dm.train_dataset().source, DecodedCache) and cli.trainer.global_step == 2
