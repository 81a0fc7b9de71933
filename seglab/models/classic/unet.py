"""The original U-Net.

Ronneberger, Fischer, Brox: "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015 (https://arxiv.org/abs/1505.04597).

A contracting path of double 3x3 convolutions and 2x2 max-pooling (the width doubling at every
level) and a symmetric expanding path that upsamples, concatenates the contracting path's features
of the same resolution (the "skip"), and convolves them. Concatenation hands the decoder the
full-resolution detail pooling threw away. Differences from the paper, on purpose:

- convolutions are padded, so the output has the input's size; the paper used unpadded ("valid")
  convolutions, predicted a smaller centre and tiled large images with mirrored borders;
- batch normalisation after every convolution (``batch_norm``), which post-dates the paper;
- ``upsampling="bilinear"`` (bilinear interpolation then a 3x3 convolution halving the channels) as
  an alternative to the paper's 2x2 "up-convolution" (``"transposed"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError


class DoubleConv(nn.Sequential):
    """Two padded 3x3 convolutions, each followed by (batch norm and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNetEncoder(nn.Module):
    """The contracting path; returns the features of every level, full resolution first."""

    def __init__(self, in_channels: int, widths: list[int], batch_norm: bool) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        for width in widths:
            self.stages.append(DoubleConv(in_channels, width, batch_norm))
            in_channels = width
        self.out_channels = widths
        self.output_stride = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            features.append(x)
        return features


class Up(nn.Module):
    """Upsample 2x halving the channels, concatenate the skip, double convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        upsampling: Literal["transposed", "bilinear"],
        batch_norm: bool,
    ) -> None:
        super().__init__()
        if upsampling == "transposed":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
            )
        self.conv = DoubleConv(2 * out_channels, out_channels, batch_norm)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with ``depth`` poolings; level ``i`` has ``base_width * 2**i`` channels.

    Args:
        num_classes: output channels.
        in_channels: input channels.
        depth: number of 2x downsamplings (the paper: 4, so inputs must be divisible by 16).
        base_width: channels of the first level (the paper: 64).
        upsampling: ``transposed`` (the paper's 2x2 up-convolution) or ``bilinear`` + 3x3 conv.
        batch_norm: batch normalisation after each convolution.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        depth: int = 4,
        base_width: int = 64,
        upsampling: Literal["transposed", "bilinear"] = "transposed",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1 or base_width < 1:
            raise ConfigError(
                f"model.model_kwargs: U-Net needs depth >= 1 and base_width >= 1, "
                f"got depth={depth}, base_width={base_width}"
            )
        if upsampling not in ("transposed", "bilinear"):
            raise ConfigError(
                "model.model_kwargs.upsampling must be 'transposed' or 'bilinear', "
                f"got {upsampling!r}"
            )
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.encoder = UNetEncoder(in_channels, widths, batch_norm)
        self.decoder = nn.ModuleList(
            Up(widths[i + 1], widths[i], upsampling, batch_norm) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        features = self.encoder(x)
        x = features[-1]
        for up, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            x = up(x, skip)
        return self.head(x)


def unet_original(
    *,
    num_classes: int,
    in_channels: int = 3,
    depth: int = 4,
    base_width: int = 64,
    upsampling: Literal["transposed", "bilinear"] = "transposed",
    batch_norm: bool = True,
) -> UNet:
    """The U-Net of the paper (depth 4, 64 base channels) with padded convolutions."""
    return UNet(num_classes, in_channels, depth, base_width, upsampling, batch_norm)
