"""The original U-Net: concatenating skips, padded convolutions, two kinds of upsampling."""

import pytest
import torch
from torch import nn

from seglab.models import SegmentationModule
from seglab.models.classic import unet_original


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
def test_output_has_the_input_size(upsampling):
    model = unet_original(num_classes=3, depth=2, base_width=4, upsampling=upsampling)
    assert model(torch.randn(1, 3, 16, 24)).shape == (1, 3, 16, 24)
    assert model.encoder.output_stride == 4
    # each decoder level upsamples the chosen way: a 2x2 up-convolution, or bilinear + convolution
    kinds = {
        type(m)
        for level in model.decoder
        for m in level.modules()
        if isinstance(m, nn.ConvTranspose2d | nn.Upsample)
    }
    assert kinds == {nn.ConvTranspose2d if upsampling == "transposed" else nn.Upsample}


def test_widths_double_per_level_and_skips_are_concatenated():
    model = unet_original(num_classes=2, in_channels=1, depth=3, base_width=8)
    assert model.encoder.out_channels == [8, 16, 32, 64]
    # the first decoder convolution sees the upsampled features and the skip, concatenated
    assert model.decoder[0].conv[0].in_channels == 2 * 32
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_odd_sizes_are_padded_and_cropped_by_the_module():
    module = SegmentationModule(
        arch="unet_original", num_classes=4, model_kwargs={"depth": 3, "base_width": 4}
    )
    assert module.size_divisor == 8
    assert module(torch.randn(1, 3, 37, 53)).shape == (1, 4, 37, 53)


def test_bad_settings_name_the_option():
    with pytest.raises(ValueError, match="upsampling"):
        unet_original(num_classes=2, upsampling="nearest")
    with pytest.raises(ValueError, match="depth"):
        unet_original(num_classes=2, depth=0)
