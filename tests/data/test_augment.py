"""``seglab.data.augment``: settings, parameter draws, and the flip and photometric ops on batches,
per sample in the loader workers or on whole batches on the device (``data.augment_on_device``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from lightning import Trainer
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from seglab import FolderDataModule
from seglab.cli import main
from seglab.data import BatchAugment, SyntheticDataModule
from seglab.data.augment import Augment, AugmentParams
from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from seglab.data.transforms import train_transform
from seglab.models.module import SegmentationModule
from tests.conftest import TINY, write_folder_dataset

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


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
    """The loader's transform (with a crop of the whole image) applied to one sample ``n`` times."""
    transform = train_transform(image.shape[-2:], replace(augment, scale_range=(1.0, 1.0)))
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
    cpu = cpu_path(augment, image, mask, 1500)
    device = device_path(augment, image, mask, 6000)
    # The two draw different parameters: their quantiles agree within the sampling noise.
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
    images = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8, generator=_gen(0))
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
        # rounded once to uint8 levels before gamma: half a level times gamma's slope (< 3 here)
        expected = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        torch.testing.assert_close(out[i] * STD, expected * STD, atol=1.5 / 255, rtol=0)


def _params(n: int = 1, **values) -> AugmentParams:
    """Parameters for ``n`` samples: every op off unless given (a number for all, or a list)."""
    identity = dict(
        flip=False, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0, gamma=1.0, blur=False
    )
    identity.update(sigma=1.0, order=[[0, 1, 2, 3]] * n)
    columns = {}
    for key, value in {**identity, **values}.items():
        value = value if isinstance(value, list) else [value] * n
        dtype = torch.bool if key in ("flip", "blur") else None
        columns[key] = torch.tensor(value, dtype=dtype or torch.float64)
    columns["order"] = columns["order"].long()
    return AugmentParams(**columns)


@pytest.mark.parametrize(
    ("order", "flip", "gamma", "sigma"),
    [
        ([0, 1, 2, 3], False, 0.8, None),
        ([3, 2, 1, 0], True, 1.25, 0.9),
        ([2, 0, 3, 1], True, 1.0, 1.4),
    ],
)
def test_one_sample_equals_torchvision_float_ops_within_uint8_rounding(order, flip, gamma, sigma):
    image = torch.randint(0, 256, (3, 24, 30), dtype=torch.uint8, generator=_gen(0))
    factors = [1.15, 0.85, 1.2, -0.03]
    params = _params(
        order=[order],
        flip=flip,
        brightness=factors[0],
        contrast=factors[1],
        saturation=factors[2],
        hue=factors[3],
        gamma=gamma,
        blur=sigma is not None,
        sigma=sigma or 1.0,
    )
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out, _ = BatchAugment(Augment(), mean, std).apply(image[None], None, params)
    x = image.float() / 255
    x = x.flip(-1) if flip else x
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for op in order:
        x = ops[op](x, factors[op])
    x = TF.adjust_gamma(x, gamma)
    x = TF.gaussian_blur(x, [5, 5], [sigma, sigma]) if sigma is not None else x
    scale = torch.tensor(std).view(3, 1, 1)
    # one rounding to uint8 levels before gamma: half a level, times gamma's slope (< 3 here)
    torch.testing.assert_close(
        out[0] * scale, TF.normalize(x, mean, std) * scale, atol=1.5 / 255, rtol=0
    )
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "hue", [-0.5, -0.45, -0.3, -0.17, -0.02, 0.0, 0.013, 1 / 6, 0.2, 0.3, 1 / 3, 0.41, 0.5]
)
def test_hue_rotation_equals_torchvision_within_rounding(hue):
    x = torch.rand(3, 20, 20, generator=_gen(0))
    x[:, :2] = 0.5  # grey pixels: no chroma
    x[0, 2:4], x[1, 2:4] = 0.9, 0.9  # ties for the max channel
    x[1, 4:6], x[2, 4:6] = 0.8, 0.8
    x[0, 6:8], x[2, 6:8] = 0.7, 0.7
    augment = BatchAugment(Augment(), mean=(0.0,) * 3, std=(1.0,) * 3)
    expected = TF.adjust_hue(x, hue)
    # alone (one shift) and in a batch with other shifts: rounded to the nearest uint8 level
    alone, _ = augment.apply(x[None], None, _params(hue=hue))
    batch, _ = augment.apply(x.expand(3, -1, -1, -1), None, _params(3, hue=[hue, 0.1, -0.2]))
    for out in (alone[0], batch[0]):
        torch.testing.assert_close(out, expected, atol=0.5 / 255 + 1e-6, rtol=0)


def test_a_batch_gives_each_sample_what_it_gets_alone():
    augment = BatchAugment(Augment(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.3))
    images = torch.randint(0, 256, (24, 3, 16, 20), dtype=torch.uint8, generator=_gen(1))
    masks = torch.randint(0, 4, (24, 16, 20), generator=_gen(2))
    params = augment.sample(24, _gen(3))
    out, out_masks = augment.apply(images, masks, params)
    for i in range(24):
        one = AugmentParams(**{k: v[i : i + 1] for k, v in vars(params).items()})
        alone, alone_mask = augment.apply(images[i : i + 1], masks[i : i + 1], one)
        assert torch.equal(alone_mask[0], out_masks[i])
        # the same values up to float rounding (which may tip a value to the next uint8 level)
        differ = ((alone[0] - out[i]) * STD).abs() > 1e-5
        assert differ.float().mean() < 0.01
        assert ((alone[0] - out[i]) * STD).abs().max() <= 1.01 / 255


def test_draws_follow_colorjitter_ranges_every_op_order_and_flip_half():
    augment = BatchAugment(Augment())
    p = augment.sample(2000, _gen(0))
    assert len({tuple(o) for o in p.order.tolist()}) == 24  # every order of the four ops
    for factor in (p.brightness, p.contrast, p.saturation):
        assert 0.8 <= factor.min() < 0.81 and 1.19 < factor.max() <= 1.2
    assert -0.02 <= p.hue.min() < -0.019 and 0.019 < p.hue.max() <= 0.02
    assert 0.8 <= p.gamma.min() < 0.81 and 1.24 < p.gamma.max() <= 1.25
    assert p.sigma.min() >= 0.1 and p.sigma.max() <= 1.5
    assert 0.45 < p.flip.float().mean() < 0.55 and 0.08 < p.blur.float().mean() < 0.12
    off = BatchAugment(Augment(**OFF)).sample(100, _gen(0))
    assert not off.flip.any() and not off.blur.any() and (off.gamma == 1).all()
    assert (off.brightness == 1).all() and (off.hue == 0).all()


def test_one_sample_in_a_worker_flips_its_mask_with_its_image():
    image, mask = colourful_image(), column_mask()
    off = Augment(**{**OFF, "hflip": True, "scale_range": (1.0, 1.0)})
    transform = train_transform((16, 16), off, mean=(0.0,) * 3, std=(1.0,) * 3)
    torch.manual_seed(0)
    flips = 0
    for _ in range(40):
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        flipped = not torch.equal(out_mask, mask)
        assert torch.equal(out_mask, mask.flip(-1) if flipped else mask)
        expected = image.flip(-1) if flipped else image
        torch.testing.assert_close(out_image.as_subclass(torch.Tensor), expected.float() / 255)
        flips += flipped
    assert 5 < flips < 35


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


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"hue": 0.7}, r"data\.augment\.hue must be in \[0, 0\.5\], got 0\.7"),
        ({"brightness": -0.1}, r"data\.augment\.brightness must be >= 0"),
        (
            {"gamma": (1.25, 0.8)},
            r"data\.augment\.gamma must be .*0 < low <= high, got \[1\.25, 0\.8\]",
        ),
        ({"scale_range": (2.0, 0.5)}, r"data\.augment\.scale_range must be .*0 < low <= high"),
        ({"scale_range": (0.5, 1.0, 2.0)}, r"data\.augment\.scale_range must be \[low, high\]"),
        ({"max_class_ratio": 1.5}, r"data\.augment\.max_class_ratio must be in \(0, 1\]"),
        ({"blur_prob": 2}, r"data\.augment\.blur_prob must be in \[0, 1\]"),
    ],
)
def test_out_of_range_settings_name_the_option(setting, message):
    with pytest.raises(ValueError, match=message):
        Augment(**setting)


def test_misshapen_batches_are_refused():
    with pytest.raises(ValueError, match=r"images \(N, 3, H, W\)"):
        BatchAugment()(torch.zeros(2, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"masks \(2, 8, 8\) do not match"):
        BatchAugment()(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), torch.zeros(2, 8, 8))


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
    # normalised with ImageNet's statistics: within ((0, 1) - mean) / std, and not [0, 1]
    assert all(-2.2 < x.min() < 0 and x.max() < 2.7 for x in seen)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("on_device", [False, True])
def test_one_flip_keeps_images_and_masks_aligned_in_the_workers_and_on_the_device(
    tmp_path, on_device
):
    # The image's red channel encodes its mask (class * 60, ignore as 196): after the loader (and,
    # with augment_on_device, the hook on the transferred batch) each mask still equals what its
    # image says, whether that sample was flipped or not.
    root = write_folder_dataset(tmp_path / "data", {"train": 8, "val": 1})
    data = FolderDataModule(
        str(root),
        num_classes=3,
        crop_size=(40, 48),  # the whole image: any difference from the stored mask is a flip
        batch_size=4,
        num_workers=0,
        augment=Augment(**{**OFF, "hflip": True, "scale_range": (1.0, 1.0)}),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        augment_on_device=on_device,
    )
    data.setup("fit")
    data.trainer = Trainer(logger=False)
    data.trainer.training = True
    source = data.source("train")
    stored = {}
    for i in range(len(source)):
        _, mask, name = source.read(i)
        stored[name] = mask.long()
    flipped = 0
    for epoch in range(3):
        torch.manual_seed(epoch)
        for batch in data.train_dataloader():
            assert batch["image"].dtype == (torch.uint8 if on_device else torch.float32)
            batch = data.on_after_batch_transfer(batch, 0)
            red = (batch["image"][:, 0] * 255).round().long()
            assert torch.equal(torch.where(red == 196, 255, red // 60), batch["mask"])
            for name, mask in zip(batch["name"], batch["mask"], strict=True):
                flip = not torch.equal(mask, stored[name])
                assert torch.equal(mask, stored[name].flip(-1) if flip else stored[name])
                flipped += flip
    assert 3 < flipped < 21  # of 24 samples, about half flipped


@pytest.mark.parametrize("n", [1, 3])
def test_blur_equals_torchvision_and_reused_scratch_memory_leaves_no_trace(n):
    """The blur (reflect padding written into reused memory for one sample) against torchvision's
    float blur; a second call on other data gives that data's result, not a mix with the first."""
    from seglab.data.augment import _blur

    for seed, size in ((0, (17, 23)), (1, (17, 23)), (2, (9, 12))):
        x = torch.rand(n, 3, *size, generator=_gen(seed)) * 255
        sigma = torch.rand(n, generator=_gen(seed), dtype=torch.float64) * 1.4 + 0.1
        out = _blur(x, sigma)
        for i in range(n):
            expected = TF.gaussian_blur(x[i], [5, 5], [float(sigma[i])] * 2)
            torch.testing.assert_close(out[i], expected, atol=2e-4, rtol=0)


def test_one_sample_after_another_gives_each_its_own_result():
    """The workers' path reuses its temporaries' memory: no result depends on the call before."""
    augment = BatchAugment(Augment(blur_prob=1.0, hue=0.3, saturation=0.5))
    images = torch.randint(0, 256, (2, 3, 20, 24), dtype=torch.uint8, generator=_gen(5))
    params = augment.sample(2, _gen(6))
    ones = [AugmentParams(**{k: v[i : i + 1] for k, v in vars(params).items()}) for i in range(2)]
    first = [augment.apply(images[i : i + 1], None, ones[i])[0] for i in (0, 1)]
    again = [augment.apply(images[i : i + 1], None, ones[i])[0] for i in (1, 0)]
    assert torch.equal(first[0], again[1]) and torch.equal(first[1], again[0])
    assert not torch.equal(first[0], first[1])
