"""FCN-32s, FCN-16s and FCN-8s on a timm backbone.

Long, Shelhamer, Darrell: "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015
(https://arxiv.org/abs/1411.4038).

A classification network becomes a dense predictor: a 1x1 "score" convolution turns the deepest
features (stride 32) into per-class scores, which a transposed convolution upsamples back to the
input. FCN-16s and FCN-8s fuse finer scores from the stride-16 and stride-8 features ("skips")
before upsampling, recovering detail the stride-32 map cannot hold. As in the paper, the skip score
layers start at zero (the fused net starts as its coarser parent) and every upsampling is a
learnable transposed convolution initialised to bilinear interpolation.

The paper's VGG-16 padded its first convolution by 100 pixels and cropped the upsampled scores back;
here the features of each stride are aligned by a centred crop or pad instead, so any timm backbone
that exposes stride 8, 16 and 32 features works (``vgg16_bn``'s fc6/fc7 "pre-logits" convolution,
the paper's deepest layer, is used as its stride-32 feature).
"""

from __future__ import annotations

from typing import Literal

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError


def bilinear_kernel(channels: int, factor: int) -> Tensor:
    """Weights ``(channels, channels, 2 * factor, 2 * factor)`` of a transposed convolution (stride
    ``factor``, padding ``factor // 2``) that upsamples each channel bilinearly: in the interior it
    equals ``F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)``; within
    ``factor // 2`` pixels of the border it treats the outside as zeros where interpolate repeats
    the edge pixel."""
    size = 2 * factor
    center = factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return weight


class BilinearUpsample(nn.ConvTranspose2d):
    """A learnable ``factor`` x upsampling initialised to bilinear interpolation (the output is
    exactly ``factor`` times the input size)."""

    def __init__(self, channels: int, factor: int) -> None:
        if factor < 2 or factor % 2:
            raise ValueError(f"upsampling factor must be an even number >= 2, got {factor}")
        super().__init__(
            channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
        )
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, factor))


class TimmEncoder(nn.Module):
    """The stride 8, 16 and 32 feature maps of a timm model (``features_only``), deepest last."""

    def __init__(self, name: str, pretrained: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        if not timm.is_model(name):
            raise ConfigError(
                f"model.encoder_name: timm has no model {name!r} (for FCN's backbone)"
            )
        probe = timm.create_model(name, features_only=True, pretrained=False)
        reductions = probe.feature_info.reduction()
        indices = []
        for stride in (8, 16, 32):
            matches = [i for i, r in enumerate(reductions) if r == stride]
            if not matches:
                raise ConfigError(
                    f"model.encoder_name: timm model {name!r} has no stride-{stride} features "
                    f"(its feature strides are {reductions}); FCN needs strides 8, 16 and 32"
                )
            indices.append(matches[-1])  # the deepest layer at that stride
        self.model = timm.create_model(
            name,
            features_only=True,
            out_indices=indices,
            pretrained=pretrained,
            in_chans=in_channels,
        )
        self.out_channels: list[int] = self.model.feature_info.channels()
        self.output_stride = 32

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model(x)


def center_align(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop or zero-pad ``x`` symmetrically to ``size`` (FCN's "crop" layer): a no-op whenever the
    backbone keeps the input aligned, as padded backbones do on inputs divisible by 32."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))  # negative pads crop


class FCN(nn.Module):
    """FCN with 0 (FCN-32s), 1 (FCN-16s) or 2 (FCN-8s) skip connections.

    Args:
        num_classes: output channels.
        encoder_name: timm model name (a ``tu-`` prefix is accepted and ignored).
        pretrained: timm's default pretrained weights for the backbone (a local file is loaded
            into ``encoder`` by ``seglab.models.factory``).
        in_channels: input channels.
        skips: number of skip connections (0, 1 or 2).
    """

    def __init__(
        self,
        num_classes: int,
        encoder_name: str = "vgg16_bn",
        pretrained: bool = False,
        in_channels: int = 3,
        skips: Literal[0, 1, 2] = 2,
    ) -> None:
        super().__init__()
        name = encoder_name.removeprefix("tu-")
        self.skips = skips
        self.encoder = TimmEncoder(name, pretrained, in_channels)
        c8, c16, c32 = self.encoder.out_channels
        self.score32 = nn.Conv2d(c32, num_classes, 1)
        self.score16 = nn.Conv2d(c16, num_classes, 1) if skips >= 1 else None
        self.score8 = nn.Conv2d(c8, num_classes, 1) if skips >= 2 else None
        for layer in (self.score16, self.score8):
            if layer is not None:  # the paper zero-initialises the skip scores
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.up2a = BilinearUpsample(num_classes, 2) if skips >= 1 else None
        self.up2b = BilinearUpsample(num_classes, 2) if skips >= 2 else None
        self.up_final = BilinearUpsample(num_classes, (32, 16, 8)[skips])

    def forward(self, x: Tensor) -> Tensor:
        f8, f16, f32 = self.encoder(x)
        score = self.score32(f32)
        if self.score16 is not None:
            score = center_align(score, (x.shape[-2] // 32, x.shape[-1] // 32))
            score = self.up2a(score) + self.score16(f16)
        if self.score8 is not None:
            score = self.up2b(score) + self.score8(f8)
        factor = self.up_final.stride[0]
        score = center_align(score, (x.shape[-2] // factor, x.shape[-1] // factor))
        return self.up_final(score)


def fcn32s(
    *,
    num_classes: int,
    encoder_name: str = "vgg16_bn",
    pretrained: bool = False,
    in_channels: int = 3,
) -> FCN:
    """FCN-32s: stride-32 scores upsampled 32x in one step."""
    return FCN(num_classes, encoder_name, pretrained, in_channels, skips=0)


def fcn16s(
    *,
    num_classes: int,
    encoder_name: str = "vgg16_bn",
    pretrained: bool = False,
    in_channels: int = 3,
) -> FCN:
    """FCN-16s: stride-32 scores upsampled 2x, fused with stride-16 scores, upsampled 16x."""
    return FCN(num_classes, encoder_name, pretrained, in_channels, skips=1)


def fcn8s(
    *,
    num_classes: int,
    encoder_name: str = "vgg16_bn",
    pretrained: bool = False,
    in_channels: int = 3,
) -> FCN:
    """FCN-8s: FCN-16s's fused scores upsampled 2x, fused with stride-8 scores, upsampled 8x."""
    return FCN(num_classes, encoder_name, pretrained, in_channels, skips=2)
