"""Builds the network behind ``SegmentationModule`` from an architecture and an encoder name.

All architectures of segmentation-models-pytorch are available with any smp encoder or any timm
encoder (``tu-<timm name>``). Every model returned has an ``encoder`` submodule: the backbone that
gets the lower fine-tuning learning rate and that can be frozen.
"""

from __future__ import annotations

from typing import Any, Literal

import segmentation_models_pytorch as smp
from torch import nn

from seglab.errors import ConfigError
from seglab.models.classic import CLASSIC_ARCHS, create_classic_model
from seglab.models.weights import (
    is_weights_file,
    load_encoder_weights,
    named_weights_available,
)

Arch = Literal[
    "unet",
    "unetplusplus",
    "fpn",
    "pspnet",
    "deeplabv3",
    "deeplabv3plus",
    "linknet",
    "manet",
    "pan",
    "upernet",
    "segformer",
    "dpt",
    # classic architectures, seglab/models/classic/
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "segnet",
    "unet_original",
]
SMP_ARCHS: tuple[str, ...] = tuple(a for a in Arch.__args__ if a not in CLASSIC_ARCHS)


def create_model(
    arch: str,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    in_channels: int = 3,
    num_classes: int = 2,
    **kwargs: Any,
) -> nn.Module:
    """An smp model; ``kwargs`` go to the architecture (``encoder_depth``, ``decoder_channels`` ...)."""
    if arch in CLASSIC_ARCHS:
        return create_classic_model(
            arch, encoder_name, encoder_weights, in_channels, num_classes, **kwargs
        )
    if arch not in SMP_ARCHS:
        raise ConfigError(
            f"model.arch: unknown architecture {arch!r}; choose from {', '.join(SMP_ARCHS)}"
        )
    check_encoder_name(encoder_name)
    # A local weights file is loaded after construction; a named set must be cached or downloadable.
    weights_file = encoder_weights if is_weights_file(encoder_weights) else None
    named = None if weights_file else encoder_weights
    if named is not None and encoder_name.startswith("tu-"):
        named = True  # smp's tu- encoders take a boolean: timm's default pretrained tag
    with named_weights_available(encoder_name, named):
        model = smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=named,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )
    if weights_file is not None:
        load_encoder_weights(model.encoder, weights_file)
    return model


def check_encoder_name(encoder_name: str) -> None:
    """Fail with the valid choices instead of smp's bare ``KeyError`` deep inside the constructor."""
    if encoder_name.startswith("tu-"):
        import timm

        if not timm.is_model(encoder_name[3:]):
            raise ConfigError(
                f"model.encoder_name: timm has no model {encoder_name[3:]!r}; "
                "list them with `python -c \"import timm; print(timm.list_models('*resnet*'))\"`"
            )
    elif encoder_name not in smp.encoders.get_encoder_names():
        raise ConfigError(
            f"model.encoder_name: unknown encoder {encoder_name!r}; use a timm model as "
            f"'tu-<name>' or one of smp's: {', '.join(sorted(smp.encoders.get_encoder_names()))}"
        )


def output_stride(model: nn.Module) -> int:
    """The factor the input's height and width must be divisible by."""
    encoder = getattr(model, "encoder", None)
    return int(getattr(encoder, "output_stride", 32))
