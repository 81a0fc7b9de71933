"""Test-time augmentation averages the probabilities of flipped and rescaled passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seglab.inference import Inference, predict_logits, tta_logits


def conv(kernel: torch.Tensor) -> nn.Conv2d:
    layer = nn.Conv2d(3, kernel.shape[0], kernel.shape[-1], padding=kernel.shape[-1] // 2)
    with torch.no_grad():
        layer.weight.copy_(kernel)
        layer.bias.zero_()
    return layer.eval()


def test_flips_change_nothing_for_a_flip_equivariant_model():
    torch.manual_seed(0)
    half = torch.randn(4, 3, 3, 2)
    # Symmetric in both directions: flipping the input flips the output, nothing else.
    kernel = torch.cat([half, half[..., :1]], -1)
    kernel = kernel + kernel.flip(-1) + kernel.flip(-2)
    kernel = kernel + kernel.flip(-2)
    model = conv(kernel)
    image = torch.randn(2, 3, 21, 30)
    augmented = tta_logits(model, image, hflip=True, vflip=True)
    torch.testing.assert_close(augmented.exp(), model(image).softmax(1), rtol=1e-5, atol=1e-6)


def test_flips_average_the_manually_flipped_predictions_of_a_generic_model():
    torch.manual_seed(0)
    model = conv(torch.randn(4, 3, 3, 3))
    image = torch.randn(1, 3, 21, 30)
    with torch.no_grad():
        expected = (
            model(image).softmax(1)
            + model(image.flip(-1)).flip(-1).softmax(1)
            + model(image.flip(-2)).flip(-2).softmax(1)
        ) / 3
        plain = model(image).softmax(1)
    augmented = predict_logits(model, image, Inference(hflip=True, vflip=True)).exp()
    torch.testing.assert_close(augmented, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(augmented, plain, atol=1e-3)


def test_scales_resize_the_input_and_the_logits_back():
    torch.manual_seed(0)
    model = conv(torch.randn(4, 3, 3, 3))
    image = torch.randn(1, 3, 20, 30)
    with torch.no_grad():
        small = model(F.interpolate(image, (10, 15), mode="bilinear"))
        expected = (
            model(image).softmax(1) + F.interpolate(small, (20, 30), mode="bilinear").softmax(1)
        ) / 2
    augmented = tta_logits(model, image, scales=(1.0, 0.5)).exp()
    torch.testing.assert_close(augmented, expected, rtol=1e-5, atol=1e-6)


def test_passes_count_every_scale_and_flip():
    assert Inference().passes == 1
    assert Inference(hflip=True).passes == 2
    assert Inference(hflip=True, vflip=True, scales=(0.75, 1.0, 1.25)).passes == 9


def test_bad_scales_name_the_option():
    with pytest.raises(ValueError, match="scales"):
        tta_logits(nn.Identity(), torch.randn(1, 3, 4, 4), scales=(0.0,))
