"""Grad-CAM and saliency for segmentation: the target, the hooks, the maps."""

import numpy as np
import pytest
import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.explain.cam import class_target, deepest_feature, grad_cam, input_saliency, overlay
from seglab.models import SegmentationModule


def test_target_sums_the_class_logit_over_its_predicted_pixels():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[3.0, -1.0], [2.0, -5.0]])  # class 1 wins where its logit > 0
    assert class_target(logits, 1).item() == 5.0
    # class 0 wins at (0, 1) and (1, 1), where its logit is 0
    assert class_target(logits, 0).item() == 0.0


def test_target_falls_back_to_all_pixels_when_the_class_is_not_predicted():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0] = 1.0
    logits[0, 1] = torch.tensor([[-2.0, -3.0]])
    assert class_target(logits, 1).item() == -5.0


def test_deepest_feature_skips_pooling_indices_and_sizes():
    a, b = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 2, 2)
    assert deepest_feature(([a, b], [torch.zeros(1, 3, 2, 2, dtype=torch.long)], [(4, 4)])) is b


def test_grad_cam_highlights_where_the_class_evidence_is():
    # A network whose class-1 logit is the first input channel, read through a conv "encoder".
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("encoder", nn.Conv2d(1, 1, 1, bias=False))
    model.add_module("head", nn.Conv2d(1, 2, 1))
    with torch.no_grad():
        model.encoder.weight.fill_(1.0)
        model.head.weight.zero_()
        model.head.weight[1] = 1.0
    image = torch.zeros(1, 1, 8, 8)
    image[..., 2:5, 3:6] = 1.0
    cam = grad_cam(model, image, 1, model.encoder)
    assert cam.shape == (1, 8, 8) and cam.max() == 1.0
    assert (cam[0, 2:5, 3:6] == 1).all() and cam[0, 0, 0] == 0


@pytest.mark.parametrize(
    ("arch", "kwargs", "layer"),
    [
        ("fcn8s", {}, "encoder.model.layer3"),
        ("segnet", {"depths": [1, 1], "widths": [4, 8]}, None),
        ("unet_original", {"depth": 2, "base_width": 4}, "decoder.0"),
        ("unet", {"encoder_depth": 3, "decoder_channels": [16, 8, 4]}, None),
    ],
)
def test_maps_of_any_architecture_have_the_image_size(arch, kwargs, layer):
    torch.manual_seed(0)
    module = SegmentationModule(
        arch=arch, encoder_name="tu-test_resnet", num_classes=3, model_kwargs=kwargs
    ).eval()
    image = torch.randn(1, 3, 37, 53)
    target = module.model.get_submodule(layer or "encoder")
    cam = grad_cam(module.model, image, 1, target, forward=module)
    saliency = input_saliency(module, image, 1)
    for heat in (cam, saliency):
        assert heat.shape == (1, 37, 53) and heat.min() >= 0 and heat.max() <= 1
    assert saliency.std() > 0


def test_overlay_blends_colours_over_the_image():
    image = np.full((4, 5, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 20).reshape(4, 5)
    out = overlay(image, heat)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert out[0, 0, 2] > out[0, 0, 0] and out[-1, -1, 0] > out[-1, -1, 2]  # blue low, red high


class SkipsALayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_a_layer_that_the_forward_pass_skips_is_named_as_the_mistake():
    model = SkipsALayer()
    with pytest.raises(ConfigError, match=r"--layer: the chosen layer did not run"):
        grad_cam(model, torch.rand(1, 3, 8, 8), 0, model.unused)
