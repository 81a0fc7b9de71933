"""Architectures from the papers that shaped semantic segmentation, one readable file each:
FCN-32s/16s/8s (``fcn.py``), SegNet (``segnet.py``) and the original U-Net (``unet.py``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from seglab.errors import ConfigError
from seglab.models.classic.fcn import FCN, fcn8s, fcn16s, fcn32s
from seglab.models.classic.segnet import SegNet, segnet
from seglab.models.classic.unet import UNet, unet_original

CLASSIC_ARCHS: tuple[str, ...] = ("fcn32s", "fcn16s", "fcn8s", "segnet", "unet_original")


def create_classic_model(
    arch: str,
    encoder_name: str,
    pretrained: bool | str | None,
    in_channels: int,
    num_classes: int,
    **kwargs: Any,
) -> nn.Module:
    """A classic architecture. FCNs use ``encoder_name`` (a timm backbone) with timm's pretrained
    weights (``pretrained``); SegNet and U-Net have their own encoder: they ignore
    ``encoder_name`` and have no pretrained weights (a local file can still be loaded into their
    ``encoder``, by the factory)."""
    if arch in ("fcn32s", "fcn16s", "fcn8s"):
        factory = {"fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s}[arch]
        return factory(
            num_classes=num_classes,
            encoder_name=encoder_name,
            pretrained=bool(pretrained),
            in_channels=in_channels,
            **kwargs,
        )
    if arch not in ("segnet", "unet_original"):
        raise ConfigError(f"model.arch: {arch!r} is not one of {', '.join(CLASSIC_ARCHS)}")
    if pretrained:
        raise ConfigError(
            f"model.encoder_weights: {arch} has its own randomly initialised encoder and no "
            f"pretrained weights; set encoder_weights: null (or the path of a file of its own)"
        )
    factory = segnet if arch == "segnet" else unet_original
    return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)


__all__ = [
    "CLASSIC_ARCHS",
    "FCN",
    "SegNet",
    "UNet",
    "create_classic_model",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "segnet",
    "unet_original",
]
