"""Training geometry (random scale and crop) and the whole training and evaluation transforms."""

import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from seglab.data.augment import Augment, BatchAugment
from seglab.data.transforms import RandomScaleCrop, eval_transform, train_transform

IGNORE = 255
NO_PHOTOMETRIC = dict(brightness=0, contrast=0, saturation=0, hue=0, gamma=(1.0, 1.0), blur_prob=0)


def _pattern(h: int = 40, w: int = 56, block: int = 8):
    """A mask of square blocks of classes 0..4, and an image whose every channel encodes the class,
    so after any geometric transform the image tells which mask value must be at each pixel."""
    g = torch.Generator().manual_seed(0)
    mask = (
        torch.randint(0, 5, (h // block, w // block), generator=g)
        .repeat_interleave(block, 0)
        .repeat_interleave(block, 1)
    )
    image = (mask * 50 + 5).to(torch.uint8).expand(3, h, w).clone()
    return tv_tensors.Image(image), tv_tensors.Mask(mask.to(torch.uint8))


def _decoded(image: torch.Tensor) -> torch.Tensor:
    """Class encoded by the (un-normalised, mean 0 / std 1) image; -1 where padding (0)."""
    value = image[0] * 255
    return torch.where(value < 2, torch.tensor(-1.0), ((value - 5) / 50).round())


@pytest.mark.parametrize("seed", range(5))
def test_crop_pad_and_flip_keep_image_and_mask_aligned_exactly(seed):
    torch.manual_seed(seed)
    t = train_transform(
        (48, 64),
        Augment(scale_range=(1.0, 1.0), **NO_PHOTOMETRIC),
        IGNORE,
        mean=(0,) * 3,
        std=(1,) * 3,
    )
    image, mask = t(*_pattern())
    assert image.shape == (3, 48, 64) and mask.shape == (48, 64)
    assert image.dtype == torch.float32
    code = _decoded(image)
    padded = code == -1
    assert padded.any(), "a 40x56 input cropped to 48x64 must be padded"
    assert (mask[padded] == IGNORE).all()
    assert torch.equal(code[~padded].long(), mask[~padded].long())


@pytest.mark.parametrize("seed", range(5))
def test_random_scale_resizes_masks_with_nearest_and_stays_aligned(seed):
    torch.manual_seed(seed)
    t = train_transform(
        (32, 32), Augment(scale_range=(0.5, 2.0), **NO_PHOTOMETRIC), IGNORE, (0,) * 3, (1,) * 3
    )
    image, mask = t(*_pattern(128, 128, block=32))
    valid = mask != IGNORE
    assert set(mask[valid].unique().tolist()) <= {0, 1, 2, 3, 4}  # nearest: no blended labels
    # Away from block borders (where the bilinear image blends two classes) image and mask agree.
    m = mask.float()[None, None]
    flat = (F.max_pool2d(m, 5, 1, 2) == -F.max_pool2d(-m, 5, 1, 2))[0, 0] & valid
    assert flat.sum() > 100
    assert torch.equal(_decoded(image)[flat].long(), mask[flat].long())


def test_photometric_changes_the_image_but_never_the_mask():
    torch.manual_seed(0)
    image, mask = _pattern()
    t = train_transform(
        (40, 56), Augment(scale_range=(1.0, 1.0), hflip=False, blur_prob=1.0), IGNORE
    )
    out_image, out_mask = t(image, mask)
    assert torch.equal(out_mask, mask)
    plain = eval_transform()(image, mask)[0]
    assert not torch.allclose(out_image, plain)


def test_class_ratio_retry_avoids_single_class_crops():
    mask = torch.zeros(64, 64, dtype=torch.uint8)
    mask[:, 48:] = 1  # the right quarter is class 1
    image = tv_tensors.Image(torch.zeros(3, 64, 64, dtype=torch.uint8))
    mixed = 0
    for seed in range(20):
        torch.manual_seed(seed)
        crop = RandomScaleCrop((1.0, 1.0), (16, 16), IGNORE, max_class_ratio=0.95)
        _, out = crop(image, tv_tensors.Mask(mask))
        mixed += len(out.unique()) > 1
    # without the retry a 16x16 crop straddles the border in 1 of 49 positions
    assert mixed >= 15


def test_eval_transform_only_normalises():
    image, mask = _pattern()
    out_image, out_mask = eval_transform(mean=(0.5,) * 3, std=(0.25,) * 3)(image, mask)
    torch.testing.assert_close(out_image, (image.float() / 255 - 0.5) / 0.25)
    assert torch.equal(out_mask, mask)


def _reference_crop(image, mask, params, size):
    """What ``RandomScaleCrop`` must give for ``params``, with torchvision's public ops: crop the
    source region, resize it (bilinear antialiased, masks nearest), crop the kept part, pad."""
    (y0, y1, rh, oy), (x0, x1, rw, ox) = params["rows"], params["cols"]
    vh, vw = params["visible"]
    pad = [0, 0, size[1] - vw, size[0] - vh]
    region = TF.resize(TF.crop(image, y0, x0, y1 - y0, x1 - x0), [rh, rw], antialias=True)
    region_mask = TF.resize(TF.crop(mask, y0, x0, y1 - y0, x1 - x0), [rh, rw])
    return (
        TF.pad(TF.crop(region, oy, ox, vh, vw), pad, fill=0),
        TF.pad(TF.crop(region_mask, oy, ox, vh, vw), pad, fill=IGNORE),
    )


@pytest.mark.parametrize("seed", range(12))
def test_scale_crop_equals_torchvision_crop_resize_pad_of_the_same_region(seed):
    """Images decoded interleaved (as torchvision decodes) or planar (as the cache stores them),
    masks of any integer type: exactly torchvision's resize of the region, masks nearest."""
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(30, 90, (2,), generator=g))
    image = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).permute(2, 0, 1)
    if seed % 3 == 0:
        image = image.contiguous()
    mask = torch.randint(0, 5, (h, w), generator=g).to(torch.uint8 if seed % 2 else torch.int64)
    image, mask = tv_tensors.Image(image), tv_tensors.Mask(mask)
    crop = RandomScaleCrop((1.0, 1.0) if seed % 4 == 0 else (0.5, 2.0), (48, 64), IGNORE)
    torch.manual_seed(seed)
    params = crop.make_params([image, mask])
    out_image, out_mask = crop.transform(image, params), crop.transform(mask, params)
    ref_image, ref_mask = _reference_crop(image, mask, params, (48, 64))
    assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
    assert out_mask.dtype == mask.dtype and torch.equal(out_mask, ref_mask)
    assert out_image.dtype == torch.uint8 and torch.equal(out_image, ref_image)


def test_scale_draws_cover_the_range_and_crops_every_position():
    image = tv_tensors.Image(torch.zeros(3, 40, 50, dtype=torch.uint8))
    crop = RandomScaleCrop((0.5, 2.0), (16, 16), IGNORE)
    torch.manual_seed(0)
    rows = [crop.make_params([image])["rows"] for _ in range(2000)]
    tops = {r[0] for r in rows}
    sizes = torch.tensor([r[2] / (r[1] - r[0]) for r in rows])  # the scale each region got
    assert sizes.min() < 0.6 and sizes.max() > 1.8 and 0.9 < sizes.median() < 1.5
    assert min(tops) == 0 and max(tops) >= 30  # up to the bottom of a 2x (80-row) image


@pytest.mark.parametrize("seed", range(4))
def test_workers_and_device_run_the_same_augmentation(seed):
    """The loader's per-sample transform equals scale/crop in the worker followed by
    ``BatchAugment`` on the batch (``augment_on_device``), from the same random draws."""
    image, mask = _pattern(64, 80)
    augment = Augment(blur_prob=0.5)
    torch.manual_seed(seed)
    cpu_image, cpu_mask = train_transform((48, 64), augment, IGNORE)(image, mask)
    torch.manual_seed(seed)
    crop_image, crop_mask = train_transform((48, 64), augment, IGNORE, on_device=True)(image, mask)
    assert crop_image.dtype == torch.uint8
    device_image, device_mask = BatchAugment(augment)(crop_image[None], crop_mask[None])
    assert torch.equal(cpu_mask, device_mask[0])
    torch.testing.assert_close(cpu_image.as_subclass(torch.Tensor), device_image[0])
