"""SegNet: max-pooling indices drive max-unpooling in the mirrored decoder."""

import pytest
import torch
import torch.nn.functional as F

from seglab.models import SegmentationModule
from seglab.models.classic import segnet

TINY = {"depths": [1, 2], "widths": [4, 8]}


def test_unpooling_puts_values_back_at_the_pooled_indices():
    model = segnet(num_classes=2, **TINY).eval()
    x = torch.randn(1, 3, 8, 8)
    features, indices, sizes = model.encoder(x)
    assert [f.shape[-1] for f in features] == [4, 2] and sizes == [(8, 8), (4, 4)]
    pre_pool = model.encoder.stages[0](x)
    pooled, idx = F.max_pool2d(pre_pool, 2, 2, return_indices=True)
    torch.testing.assert_close(features[0], pooled)
    assert torch.equal(indices[0], idx)
    unpooled = F.max_unpool2d(pooled, idx, 2, 2, output_size=sizes[0])
    # every 2x2 window keeps its maximum where it was and zeros elsewhere
    windows = unpooled.reshape(1, 4, 4, 2, 4, 2).transpose(3, 4).reshape(1, 4, 4, 4, 4)
    assert ((windows != 0).sum(-1) <= 1).all()
    kept = unpooled != 0
    torch.testing.assert_close(unpooled[kept], pre_pool[kept])
    torch.testing.assert_close(
        unpooled.flatten(2).max(-1).values, pre_pool.flatten(2).max(-1).values
    )


def test_decoder_mirrors_the_encoder():
    model = segnet(num_classes=5, depths=[2, 2, 3], widths=[8, 16, 32])
    assert len(model.decoder) == 3 and model.encoder.output_stride == 8
    assert model(torch.randn(2, 3, 32, 40)).shape == (2, 5, 32, 40)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.encoder.modules()) == 7


def test_odd_sizes_are_padded_and_cropped_by_the_module():
    module = SegmentationModule(arch="segnet", num_classes=3, model_kwargs=TINY)
    assert module(torch.randn(2, 3, 37, 53)).shape == (2, 3, 37, 53)


def test_mismatched_depths_and_widths_are_refused():
    with pytest.raises(ValueError, match="one width per stage"):
        segnet(num_classes=2, depths=[1, 1], widths=[4])


def test_pretrained_weights_are_refused():
    with pytest.raises(ValueError, match="encoder_weights"):
        SegmentationModule(
            arch="segnet", encoder_weights="imagenet", num_classes=2, model_kwargs=TINY
        )
