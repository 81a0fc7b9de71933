"""Sliding-window inference stitches tiles back into the image's own logits."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from seglab.inference import Inference, predict_logits, sliding_window
from seglab.inference.sliding_window import gaussian_weights, tile_starts
from seglab.models import SegmentationModule


@pytest.fixture(scope="module")
def unet() -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(encoder_name="tu-test_resnet", num_classes=3).eval()


def test_tiles_end_flush_with_the_image_edge_and_never_cross_it():
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68]
    assert tile_starts(96, 32, 32) == [0, 32, 64]
    assert tile_starts(20, 32, 16) == [0]  # smaller than a tile: one (padded) tile
    for size in range(33, 120):
        starts = tile_starts(size, 32, 21)
        assert starts[0] == 0 and starts[-1] == size - 32
        assert all(b - a <= 21 for a, b in itertools.pairwise(starts))


def test_gaussian_weights_peak_at_the_centre_and_stay_positive():
    w = gaussian_weights((16, 24))
    assert w.shape == (16, 24) and float(w.max()) == pytest.approx(1.0, abs=1e-2)
    assert float(w.min()) > 0 and w[8, 12] > w[0, 0]


def test_one_tile_covering_the_image_equals_whole_image_inference(unet):
    image = torch.randn(2, 3, 64, 96)
    whole = predict_logits(unet, image, Inference(mode="whole"))
    slide = predict_logits(unet, image, Inference(mode="slide", tile_size=(64, 96)))
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)  # only float rounding differs
    assert torch.equal(whole, unet(image))


@pytest.mark.parametrize("weighting", ["uniform", "gaussian"])
def test_overlapping_tiles_reproduce_a_translation_equivariant_model(weighting):
    # A 1x1 convolution sees no neighbours, so no tile border or padding can change its output: the
    # weighted average of overlapping tiles must give back exactly the direct result at every pixel.
    torch.manual_seed(0)
    model = nn.Conv2d(3, 5, kernel_size=1).eval()
    image = torch.randn(
        1, 3, 50, 77
    )  # not a multiple of the stride: last tiles move back to the edge
    direct = model(image)
    stitched = sliding_window(
        model, image, tile_size=16, overlap=0.5, weighting=weighting, tile_batch_size=3
    )
    assert stitched.shape == direct.shape
    torch.testing.assert_close(stitched, direct, rtol=1e-5, atol=1e-5)


def test_offset_tiles_would_be_caught():
    # The same check fails for a position-dependent model, so the test above is not vacuous.
    model = nn.Conv2d(3, 5, kernel_size=5, padding=2).eval()
    image = torch.randn(1, 3, 50, 77)
    stitched = sliding_window(model, image, tile_size=16, overlap=0.5)
    assert not torch.allclose(stitched, model(image), atol=1e-3)


def test_batched_tiles_equal_one_tile_at_a_time(unet):
    image = torch.randn(1, 3, 90, 130)
    one = sliding_window(unet, image, tile_size=64, overlap=0.5, tile_batch_size=1)
    batched = sliding_window(unet, image, tile_size=64, overlap=0.5, tile_batch_size=5)
    torch.testing.assert_close(batched, one, rtol=1e-5, atol=1e-5)


def test_images_smaller_than_a_tile_are_padded_and_cropped_back(unet):
    image = torch.randn(1, 3, 45, 67)
    logits = predict_logits(unet, image, Inference(mode="slide", tile_size=96))
    assert logits.shape == (1, 3, 45, 67) and torch.isfinite(logits).all()
    # Each pixel is cropped back from where it was: a 1x1 convolution, which no padding affects,
    # gives exactly its direct result (padding on the wrong side would shift every pixel).
    torch.manual_seed(0)
    pointwise = nn.Conv2d(3, 4, kernel_size=1).eval()
    stitched = sliding_window(pointwise, image, tile_size=(96, 80))
    torch.testing.assert_close(stitched, pointwise(image), rtol=1e-5, atol=1e-5)


def tile_means(tiles: torch.Tensor) -> torch.Tensor:
    """A "model" whose logits are constant over each tile: the tile's mean, and its negative."""
    mean = tiles.mean((1, 2, 3), keepdim=True)
    return torch.cat([mean, -mean], 1).expand(-1, -1, *tiles.shape[-2:])


def test_overlapping_tiles_are_averaged_with_the_chosen_weights_at_the_given_stride():
    """With one value per tile, every pixel must be the weighted average of the tiles covering it,
    worked out here by hand from the tile offsets at the given stride and each weighting's
    weights: a stride or a weighting that is not applied gives other numbers."""
    torch.manual_seed(0)
    image = torch.randn(1, 3, 40, 50)
    (th, tw), (sh, sw) = (16, 20), (10, 12)
    stitched = {}
    for weighting in ("uniform", "gaussian"):
        weights = torch.ones(th, tw) if weighting == "uniform" else gaussian_weights((th, tw))
        total, weight = torch.zeros(40, 50), torch.zeros(40, 50)
        for y, x in itertools.product(tile_starts(40, th, sh), tile_starts(50, tw, sw)):
            total[y : y + th, x : x + tw] += weights * image[0, :, y : y + th, x : x + tw].mean()
            weight[y : y + th, x : x + tw] += weights
        stitched[weighting] = sliding_window(
            tile_means, image, (th, tw), stride=(sh, sw), weighting=weighting, tile_batch_size=2
        )
        torch.testing.assert_close(stitched[weighting][0, 0], total / weight)
        torch.testing.assert_close(stitched[weighting][0, 1], -total / weight)
    assert not torch.allclose(stitched["uniform"], stitched["gaussian"], atol=1e-3)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_accumulates_in_host_memory_when_the_device_is_full(monkeypatch, device):
    model = nn.Conv2d(3, 4, kernel_size=1).eval().to(device)
    image = torch.randn(1, 3, 40, 40, device=device)
    expected = model(image)
    real_zeros, calls = torch.zeros, []

    def zeros_failing_once(*args, **kwargs):
        calls.append(kwargs.get("device"))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("no room")
        return real_zeros(*args, **kwargs)

    monkeypatch.setattr(torch, "zeros", zeros_failing_once)
    with pytest.warns(UserWarning, match="host memory"):
        stitched = sliding_window(model, image, tile_size=16, overlap=0.25)
    monkeypatch.undo()
    assert calls[-1] == torch.device("cpu")
    assert stitched.device == image.device
    torch.testing.assert_close(stitched, expected, rtol=1e-5, atol=1e-5)


def test_bad_settings_name_the_option():
    model = nn.Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="weighting"):
        sliding_window(model, torch.randn(1, 3, 8, 8), 4, weighting="cosine")
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(model, torch.randn(1, 3, 8, 8), 4, overlap=1.0)
