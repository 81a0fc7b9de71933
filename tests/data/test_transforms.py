import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from seglab.data.transforms import (
    Augment,
    FusedAugment,
    RandomCropPad,
    _hue_shift,
    _nearest_index,
    _resize_rgb8,
    eval_transform,
    train_transform,
)

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
        _, out = RandomCropPad((16, 16), IGNORE, max_class_ratio=0.95)(image, tv_tensors.Mask(mask))
        mixed += len(out.unique()) > 1
    # without the retry a 16x16 crop straddles the border in 1 of 49 positions
    assert mixed >= 15


def test_eval_transform_only_normalises():
    image, mask = _pattern()
    out_image, out_mask = eval_transform(mean=(0.5,) * 3, std=(0.25,) * 3)(image, mask)
    torch.testing.assert_close(out_image, (image.float() / 255 - 0.5) / 0.25)
    assert torch.equal(out_mask, mask)


def _jitter_params(order, flip, gamma, sigma):
    return {
        "flip": flip,
        "fn_idx": torch.tensor(order),
        "brightness_factor": 1.15,
        "contrast_factor": 0.85,
        "saturation_factor": 1.2,
        "hue_factor": -0.03,
        "gamma": gamma,
        "sigma": sigma,
    }


@pytest.mark.parametrize(
    "order, flip, gamma, sigma",
    [
        ([0, 1, 2, 3], False, 0.8, None),
        ([3, 2, 1, 0], True, 1.25, 0.9),
        ([2, 0, 3, 1], True, None, 1.4),
    ],
)
def test_fused_augment_equals_torchvision_float_ops_within_uint8_rounding(
    order, flip, gamma, sigma
):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 24, 30), dtype=torch.uint8)
    params = _jitter_params(order, flip, gamma, sigma)
    fused = FusedAugment(Augment(), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    out = fused.transform(tv_tensors.Image(image), params)
    x = image.float() / 255
    x = x.flip(-1) if flip else x
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    factors = [1.15, 0.85, 1.2, -0.03]
    for op in order:
        x = ops[op](x, factors[op])
    x = TF.adjust_gamma(x, gamma) if gamma is not None else x
    x = TF.gaussian_blur(x, [5, 5], [sigma, sigma]) if sigma is not None else x
    expected = TF.normalize(x, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    # one rounding to uint8 levels before gamma: half a level, times gamma's slope (< 3 here)
    torch.testing.assert_close(
        out * torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1),
        expected * torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1),
        atol=1.5 / 255,
        rtol=0,
    )
    assert out.dtype == torch.float32 and isinstance(out, tv_tensors.Image)


def test_fused_augment_flips_the_mask_with_the_image_and_draws_every_op_order():
    torch.manual_seed(0)
    image, mask = _pattern()
    fused = FusedAugment(Augment(), mean=None, std=None)
    orders, flips = set(), 0
    for _ in range(200):
        params = fused.make_params([image, mask])
        orders.add(tuple(params["fn_idx"].tolist()))
        flips += params["flip"]
        assert 0.8 <= params["brightness_factor"] <= 1.2 and abs(params["hue_factor"]) <= 0.02
        assert 0.8 <= params["gamma"] <= 1.25
    assert len(orders) == 24 and 70 < flips < 130
    out_image, out_mask = (
        fused.transform(image, {**params, "flip": True}),
        fused.transform(mask, {**params, "flip": True}),
    )
    assert torch.equal(out_mask, mask.flip(-1)) and isinstance(out_mask, tv_tensors.Mask)
    assert out_image.min() >= 0 and out_image.max() <= 1  # mean=None: [0, 1], normalised later


@pytest.mark.parametrize(
    "hue", [-0.5, -0.45, -0.3, -0.17, -0.02, 0.0, 0.013, 1 / 6, 0.2, 0.3, 1 / 3, 0.41, 0.5]
)
def test_hue_shift_equals_torchvision(hue):
    torch.manual_seed(0)
    x = torch.rand(3, 20, 20)
    x[:, :2] = 0.5  # grey pixels: no chroma
    x[0, 2:4], x[1, 2:4] = 0.9, 0.9  # ties for the max channel
    x[1, 4:6], x[2, 4:6] = 0.8, 0.8
    x[0, 6:8], x[2, 6:8] = 0.7, 0.7
    torch.testing.assert_close(
        _hue_shift(x * 255, hue) / 255, TF.adjust_hue(x, hue), atol=2e-6, rtol=0
    )


def test_channels_last_resize_equals_torchvision_exactly():
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)
    for size in [(18, 25), (37, 53), (90, 120)]:
        assert torch.equal(_resize_rgb8(image, *size), TF.resize(image, list(size), antialias=True))


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_fast_path_equals_the_composed_transforms(seed):
    """Called with an image and a mask, ``train_transform`` skips v2's machinery; the result must be
    what its own ``transforms`` give through ``v2.Compose`` from the same seed (same draws)."""
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(30, 90, (2,), generator=g))
    image = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).permute(2, 0, 1)
    if seed % 3 == 0:
        image = image.contiguous()  # planar as well as decoded (interleaved) images
    mask_dtype = torch.uint8 if seed % 2 else torch.int64
    mask = torch.randint(0, 5, (h, w), generator=g).to(mask_dtype)
    scale = (1.0, 1.0) if seed % 4 == 0 else (0.5, 2.0)
    t = train_transform((48, 64), Augment(scale_range=scale, blur_prob=0.5), IGNORE)
    torch.manual_seed(seed)
    fast_image, fast_mask = t(tv_tensors.Image(image), tv_tensors.Mask(mask))
    torch.manual_seed(seed)
    image_ref, mask_ref = v2.Compose(t.transforms)(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert isinstance(fast_image, tv_tensors.Image) and isinstance(fast_mask, tv_tensors.Mask)
    assert fast_mask.dtype == mask_dtype and torch.equal(fast_mask, mask_ref)
    torch.testing.assert_close(fast_image, image_ref, atol=1e-6, rtol=0)


def test_nearest_index_gathers_what_torchvision_nearest_resize_gives():
    mask = torch.randint(0, 200, (61, 47), dtype=torch.uint8)
    for rh, rw in [(61, 47), (122, 94), (100, 33), (17, 150), (30, 23)]:
        expected = TF.resize(tv_tensors.Mask(mask[5:, 3:]), [rh, rw])
        rows = _nearest_index(5, 61, rh, 0, rh)
        cols = _nearest_index(3, 47, rw, 0, rw)
        assert torch.equal(torch.from_numpy(mask.numpy().take(rows, 0).take(cols, 1)), expected)
