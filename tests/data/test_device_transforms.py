"""On-device augmentation: the CPU path's semantics on whole batches (``data.augment_on_device``)."""

from __future__ import annotations

import pytest
import torch
from lightning import Trainer
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from seglab.cli import main
from seglab.data import BatchAugment, SyntheticDataModule
from seglab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augment, normalize, photometric
from seglab.models.module import SegmentationModule
from tests.conftest import TINY

OFF = dict(
    hflip=False,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    gamma=(1.0, 1.0),
    blur_prob=0,
)
MEAN = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(-1, 1, 1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Thousands of tiny per-sample CPU transforms: threads only contend on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def colourful_image(size: int = 16) -> torch.Tensor:
    """Smooth gradients in three different directions plus noise: every op changes something."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([x, y, 1 - x * y]) * 200 + 20
    return (base + 30 * torch.rand(3, size, size, generator=g)).clamp(0, 255).to(torch.uint8)


def column_mask(size: int = 16) -> torch.Tensor:
    """Four vertical bands of classes 0..3 and a top row of ignore (255): flips show."""
    mask = (torch.arange(size) * 4 // size).expand(size, size).clone()
    mask[0] = 255
    return mask


def summary(images: torch.Tensor, masks: torch.Tensor, mask0: torch.Tensor) -> torch.Tensor:
    """Per sample, in [0, 1] units: per-channel mean, std and roughness (mean absolute difference of
    horizontal neighbours: blur lowers it), then whether the mask was flipped (last column)."""
    x = images * STD + MEAN
    roughness = x.diff(dim=-1).abs().mean((-2, -1))
    flipped = (masks != mask0).flatten(-2).any(-1, keepdim=True).float()
    return torch.cat([x.mean((-2, -1)), x.std((-2, -1)), roughness, flipped], dim=-1)


def cpu_path(augment: Augment, image: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """The loader's transform (flip, photometric, normalisation) applied to one sample ``n`` times."""
    steps = [v2.RandomHorizontalFlip()] if augment.hflip else []
    transform = v2.Compose([*steps, *photometric(augment), *normalize()])
    torch.manual_seed(1)
    rows = []
    for _ in range(n):
        x, m = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        rows.append(summary(x.as_subclass(torch.Tensor), m.as_subclass(torch.Tensor), mask))
    return torch.stack(rows)


def device_path(augment: Augment, image: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """One batch of ``n`` copies through ``BatchAugment``: each sample draws its own parameters."""
    images, masks = image.expand(n, *image.shape), mask.expand(n, *mask.shape)
    out, out_masks = BatchAugment(augment)(images, masks, torch.Generator().manual_seed(2))
    return summary(out, out_masks, mask)


def quantile_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest difference between the two samples' 2nd..98th percentiles, per statistic."""
    q = torch.linspace(0.02, 0.98, 49)
    return (torch.quantile(a, q, dim=0) - torch.quantile(b, q, dim=0)).abs().amax(0)


CASES = {
    "brightness": dict(brightness=0.2),
    "contrast": dict(contrast=0.2),
    "saturation": dict(saturation=0.2),
    "hue": dict(hue=0.02),
    "gamma": dict(gamma=(0.8, 1.25)),
    "blur_prob": dict(blur_prob=0.3),
    "flip": dict(hflip=True),
}


@pytest.mark.parametrize("case", [*CASES, "all"])
def test_output_distribution_matches_the_cpu_path(case):
    augment = Augment() if case == "all" else Augment(**{**OFF, **CASES[case]})
    image, mask = colourful_image(), column_mask()
    cpu = cpu_path(augment, image, mask, 1500 if case == "all" else 600)
    device = device_path(augment, image, mask, 6000)
    # The CPU path truncates to uint8 after each jitter op and gamma (~0.5/255 darker each).
    tolerance = (6 if case == "all" else 3) / 255
    gap = quantile_gap(cpu[:, :-1], device[:, :-1])
    assert (gap < tolerance).all()
    expected_flip_rate = 0.5 if augment.hflip else 0.0
    assert abs(cpu[:, -1].mean() - expected_flip_rate) < 0.07
    assert abs(device[:, -1].mean() - expected_flip_rate) < 0.03


@pytest.mark.parametrize(
    "case, wrong",
    [
        ("brightness", 0.3),
        ("contrast", 0.1),
        ("hue", 0.05),
        ("gamma", (0.7, 1.25)),
        ("blur_prob", 0.5),
    ],
)
def test_the_distribution_check_notices_a_wrong_setting(case, wrong):
    """The comparison above has the power to catch a wrong range or probability."""
    right = Augment(**{**OFF, **CASES[case]})
    image, mask = colourful_image(), column_mask()
    cpu = cpu_path(right, image, mask, 600)
    device = device_path(Augment(**{**OFF, case: wrong}), image, mask, 6000)
    gap = quantile_gap(cpu[:, :-1], device[:, :-1])
    assert (gap > 3 / 255).any()


def test_every_op_equals_torchvision_on_float_images_given_the_same_parameters():
    augment = BatchAugment(
        Augment(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3, blur_prob=0.5)
    )
    images = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8)
    params = augment.sample(12, torch.Generator().manual_seed(0))
    out, _ = augment.apply(images, None, params)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    factors = [params.brightness, params.contrast, params.saturation, params.hue]
    assert len({tuple(o) for o in params.order.tolist()}) > 1  # the jitter order varies per sample
    for i in range(12):
        x = images[i].float() / 255
        x = x.flip(-1) if params.flip[i] else x
        for op in params.order[i].tolist():
            x = ops[op](x, float(factors[op][i]))
        x = TF.adjust_gamma(x, float(params.gamma[i]))
        if params.blur[i]:
            x = TF.gaussian_blur(x, [5, 5], [float(params.sigma[i])] * 2)
        torch.testing.assert_close(out[i], TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD))


def test_masks_stay_aligned_with_their_images_and_ignore_pixels_stay_ignored():
    # The image encodes its mask (value = 40 * class, ignore as 250): after flips mask == f(image).
    mask = torch.stack([column_mask(), column_mask().flip(-1)] * 16)
    image = torch.where(mask == 255, 250, mask * 40).to(torch.uint8)[:, None].expand(-1, 3, -1, -1)
    out, out_mask = BatchAugment(Augment(**{**OFF, "hflip": True}))(image, mask)
    pixels = ((out * STD + MEAN) * 255).round()[:, 0]
    decoded = torch.where(pixels == 250, 255, pixels / 40).long()
    assert torch.equal(decoded, out_mask)
    flipped = (out_mask != mask).flatten(1).any(1)
    assert 0 < flipped.sum() < len(mask)
    assert torch.equal(out_mask == 255, mask == 255)  # the ignore row, left-right symmetric


def test_full_augmentation_flips_image_and_mask_together():
    # A left-to-right grey ramp stays increasing through every photometric op (all monotonic on
    # grey), so the ramp's direction tells whether the image was flipped.
    n, mask = 64, column_mask()
    ramp = torch.linspace(30, 220, 16).round().to(torch.uint8).expand(n, 3, 16, 16)
    out, out_mask = BatchAugment(Augment())(ramp, mask.expand(n, 16, 16))
    image_flipped = out[:, 0, :, -1].mean(-1) < out[:, 0, :, 0].mean(-1)
    mask_flipped = (out_mask != mask).flatten(1).any(1)
    assert torch.equal(image_flipped, mask_flipped) and 0 < mask_flipped.sum() < n
    assert ((out_mask == 255) == (mask == 255)).all()


def test_same_seed_same_batch():
    images = colourful_image().expand(4, 3, 16, 16)
    masks = column_mask().expand(4, 16, 16)
    augment = BatchAugment(Augment(blur_prob=0.5))
    torch.manual_seed(0)
    a = augment(images, masks)
    torch.manual_seed(0)
    b = augment(images, masks)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_out_of_range_settings_name_the_option():
    with pytest.raises(ValueError, match=r"data\.augment\.hue"):
        BatchAugment(Augment(hue=0.7))
    with pytest.raises(ValueError, match=r"images \(N, 3, H, W\)"):
        BatchAugment()(torch.zeros(2, 16, 16, dtype=torch.uint8))


def tiny_data(**kwargs) -> SyntheticDataModule:
    data = SyntheticDataModule(
        image_size=32, crop_size=32, num_train=4, num_val=2, batch_size=2, num_workers=0, **kwargs
    )
    data.setup("fit")
    return data


def test_with_the_option_off_the_hook_returns_the_batch_unchanged():
    data = tiny_data()
    data.trainer = Trainer(logger=False)
    data.trainer.training = True
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].dtype == torch.float32  # the CPU path normalised it
    assert data.on_after_batch_transfer(batch, 0) is batch


def test_with_the_option_on_only_training_batches_are_augmented_on_the_device():
    data = tiny_data(augment_on_device=True)
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (2, 3, 32, 32)
    data.trainer = Trainer(logger=False)
    data.trainer.validating = True
    assert data.on_after_batch_transfer(batch, 0) is batch
    data.trainer.training = True
    out = data.on_after_batch_transfer(batch, 0)
    assert out["image"].dtype == torch.float32 and out["mask"].shape == batch["mask"].shape
    assert out["image"].min() < -1 and out["image"].max() > 1  # normalised, not [0, 1]
    assert next(iter(data.val_dataloader()))["image"].dtype == torch.float32


def test_fit_with_augment_on_device_through_the_cli(monkeypatch):
    seen = []
    training_step = SegmentationModule.training_step

    def record(self, batch, batch_idx):
        seen.append(batch["image"])
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(SegmentationModule, "training_step", record)
    cli = main(
        ["fit", *TINY, "--trainer.fast_dev_run", "2", "--data.init_args.augment_on_device", "true"]
    )
    assert cli.datamodule.augment_on_device and cli.trainer.global_step == 2
    assert next(iter(cli.datamodule.train_dataloader()))["image"].dtype == torch.uint8
    assert len(seen) == 2 and all(x.dtype == torch.float32 for x in seen)
    assert all(x.min() < -1 and x.max() > 1 for x in seen)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
