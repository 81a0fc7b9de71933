"""SegNet: an encoder-decoder whose decoder upsamples with the encoder's max-pooling indices.

Badrinarayanan, Kendall, Cipolla: "SegNet: A Deep Convolutional Encoder-Decoder Architecture for
Image Segmentation", TPAMI 2017 (https://arxiv.org/abs/1511.00561).

The encoder is VGG-16-BN's 13 convolutions (stages of 2, 2, 3, 3, 3 conv-BN-ReLU, each followed by
2x2 max-pooling). Each pooling remembers where its maxima came from; the mirrored decoder
"max-unpools" (puts each value back at its remembered position, zeros elsewhere) and densifies the
sparse map with convolutions. Storing indices instead of whole feature maps (as U-Net does) keeps
memory low, and the boundaries stay where the encoder found them. ``depths`` and ``widths`` shrink
the network for tests. The paper initialised the encoder from ImageNet VGG-16; here it starts from
random weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stack(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
    layers = []
    for width in widths:
        layers.append(conv_bn_relu(in_channels, width))
        in_channels = width
    return nn.Sequential(*layers)


class SegNetEncoder(nn.Module):
    """VGG-style stages, each followed by max-pooling that returns its indices.

    ``forward`` returns ``(features, indices, sizes)``: the pooled output of every stage (deepest
    last), the pooling indices and the pre-pooling sizes the decoder unpools to."""

    def __init__(self, in_channels: int, depths: Sequence[int], widths: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        for depth, width in zip(depths, widths, strict=True):
            self.stages.append(conv_stack(in_channels, [width] * depth))
            in_channels = width
        self.out_channels = list(widths)
        self.output_stride = 2 ** len(depths)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], list[tuple[int, int]]]:
        features, indices, sizes = [], [], []
        for stage in self.stages:
            x = stage(x)
            sizes.append((x.shape[-2], x.shape[-1]))
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            features.append(x)
            indices.append(idx)
        return features, indices, sizes


class SegNet(nn.Module):
    """SegNet; the decoder mirrors the encoder (stage ``i`` maps ``widths[i]`` back to
    ``widths[i - 1]`` channels) and a final 3x3 convolution gives the class scores.

    Args:
        num_classes: output channels.
        in_channels: input channels.
        depths: convolutions per encoder stage (VGG-16: 2, 2, 3, 3, 3).
        widths: channels per encoder stage (VGG-16: 64, 128, 256, 512, 512).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        depths: Sequence[int] = (2, 2, 3, 3, 3),
        widths: Sequence[int] = (64, 128, 256, 512, 512),
    ) -> None:
        super().__init__()
        if len(depths) != len(widths) or not depths:
            raise ConfigError(
                f"model.model_kwargs: SegNet needs one width per stage, got depths={list(depths)} "
                f"and widths={list(widths)}"
            )
        self.encoder = SegNetEncoder(in_channels, depths, widths)
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(depths))):
            out = widths[i - 1] if i > 0 else widths[0]
            self.decoder.append(conv_stack(widths[i], [widths[i]] * (depths[i] - 1) + [out]))
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        features, indices, sizes = self.encoder(x)
        x = features[-1]
        for stage, idx, size in zip(self.decoder, reversed(indices), reversed(sizes), strict=True):
            x = F.max_unpool2d(x, idx, 2, 2, output_size=size)
            x = stage(x)
        return self.classifier(x)


def segnet(
    *,
    num_classes: int,
    in_channels: int = 3,
    depths: Sequence[int] = (2, 2, 3, 3, 3),
    widths: Sequence[int] = (64, 128, 256, 512, 512),
) -> SegNet:
    """SegNet with a VGG-16-BN encoder (or a smaller one through ``depths`` and ``widths``)."""
    return SegNet(num_classes, in_channels, depths, widths)
