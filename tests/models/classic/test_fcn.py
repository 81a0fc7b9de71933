"""FCN-32s/16s/8s: bilinear-initialised learnable upsampling, skip fusion, any input size."""

import pytest
import torch
import torch.nn.functional as F

from seglab.models import SegmentationModule
from seglab.models.classic import fcn8s, fcn16s, fcn32s
from seglab.models.classic.fcn import BilinearUpsample


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_transposed_convolution_starts_as_bilinear_interpolation(factor):
    x = torch.randn(1, 3, 5, 7)
    up = BilinearUpsample(3, factor)
    ours = up(x).detach()
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert ours.shape == reference.shape == (1, 3, 5 * factor, 7 * factor)
    # Interior: identical. The outer factor/2 pixels differ: the transposed convolution sees zeros
    # outside the image where interpolate repeats the edge pixel ...
    b = factor // 2
    torch.testing.assert_close(ours[..., b:-b, b:-b], reference[..., b:-b, b:-b])
    assert not torch.allclose(ours[..., :b, :], reference[..., :b, :])
    # ... so everywhere it equals interpolating the zero-padded image and cropping the padding off.
    padded = F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=factor, mode="bilinear")
    torch.testing.assert_close(ours, padded[..., factor:-factor, factor:-factor])


def test_upsampling_is_learnable():
    up = BilinearUpsample(4, 2)
    assert any(p is up.weight for p in up.parameters()) and up.weight.requires_grad
    up(torch.randn(1, 4, 3, 3)).square().sum().backward()  # the output depends on the weights
    assert up.weight.grad is not None and up.weight.grad.abs().sum() > 0


def test_skip_scores_start_at_zero_so_fcn8s_starts_as_its_coarser_parent():
    torch.manual_seed(0)
    model = fcn8s(num_classes=3, encoder_name="tu-test_resnet")
    assert model.score8.weight.abs().sum() == 0 and model.score16.weight.abs().sum() == 0
    assert model.up_final.stride == (8, 8)
    assert fcn16s(num_classes=3, encoder_name="test_resnet").up_final.stride == (16, 16)
    assert fcn32s(num_classes=3, encoder_name="test_resnet").score16 is None


@pytest.mark.parametrize("factory", [fcn32s, fcn16s, fcn8s])
def test_logits_have_the_input_size(factory):
    model = factory(num_classes=4, encoder_name="test_resnet", in_channels=1)
    assert model(torch.randn(2, 1, 64, 96)).shape == (2, 4, 64, 96)
    assert model.encoder.output_stride == 32


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
def test_odd_sizes_are_padded_and_cropped_by_the_module(arch):
    module = SegmentationModule(arch=arch, encoder_name="tu-test_resnet", num_classes=3)
    assert module(torch.randn(1, 3, 37, 53)).shape == (1, 3, 37, 53)


def test_vgg_backbone_with_its_fc6_fc7_convolutions_keeps_the_input_size():
    model = fcn8s(num_classes=5)  # vgg16_bn, whose 7x7 "fc6" shrinks the stride-32 map
    assert model(torch.randn(1, 3, 64, 96)).shape == (1, 5, 64, 96)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match=r"model.encoder_name.*nope"):
        fcn8s(num_classes=2, encoder_name="tu-nope")
