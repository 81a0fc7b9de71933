"""Builds the network behind ``SegmentationModule`` from an architecture and an encoder name.

All architectures of segmentation-models-pytorch are available with any smp encoder or any timm
encoder (``tu-<timm name>``). Every model returned has an ``encoder`` submodule: the backbone that
gets the lower fine-tuning learning rate and that can be frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import segmentation_models_pytorch as smp
import timm
from torch import nn

from seglab.errors import ConfigError, SeglabError
from seglab.models.classic import CLASSIC_ARCHS, create_classic_model
from seglab.models.weights import (
    is_weights_file,
    load_encoder_weights,
    named_weights_available,
    read_state_dict,
    whole_model_encoder,
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
FCN_ARCHS = ("fcn32s", "fcn16s", "fcn8s")  # classic architectures on a timm backbone


def create_model(
    arch: str,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    in_channels: int = 3,
    num_classes: int = 2,
    **kwargs: Any,
) -> nn.Module:
    """The network of ``arch`` with the encoder's weights: none, a named weight set (cached, or
    downloaded when the host is reachable: ``seglab.models.weights``), or a local file (the same
    rule for every architecture, ``is_weights_file``). ``kwargs`` go to the architecture
    (``encoder_depth``, ``decoder_channels`` ...)."""
    if arch not in Arch.__args__:
        raise ConfigError(
            f"model.arch: unknown architecture {arch!r}; choose from {', '.join(Arch.__args__)}"
        )
    timm_based = arch in FCN_ARCHS or encoder_name.startswith("tu-")
    if arch in SMP_ARCHS:
        check_encoder_name(encoder_name)
    if not is_weights_file(encoder_weights):
        if arch in CLASSIC_ARCHS and arch not in FCN_ARCHS:  # their own encoder: no weight sets
            return _build(arch, encoder_name, encoder_weights, in_channels, num_classes, **kwargs)
        named = encoder_weights if not timm_based or encoder_weights is None else True
        timm_name = encoder_name if encoder_name.startswith("tu-") else f"tu-{encoder_name}"
        with named_weights_available(timm_name if timm_based else encoder_name, encoder_weights):
            return _build(arch, encoder_name, named, in_channels, num_classes, **kwargs)
    path = Path(encoder_weights).expanduser()
    tensors = read_state_dict(path)
    own = whole_model_encoder(tensors)
    model = _build(arch, encoder_name, None, in_channels, num_classes, **kwargs)
    load_encoder_weights(model.encoder, tensors if own is None else own, path)
    return model


def drop_unused_stages(model: nn.Module) -> list[str]:
    """Replaces the encoder stages that a network built with ``encoder_depth < 5`` (PSPNet's
    default is 3) never runs by ``nn.Identity`` and returns their names (``encoder.layer4`` ...).

    smp builds the whole backbone and skips its last stages in ``forward``: their weights would sit
    in the optimizer, in every checkpoint and under DDP as parameters without gradients (which DDP
    refuses). smp's encoders name their stages by output stride (``get_stages()``, strides 16 and
    32); a stage whose stride exceeds ``2 ** depth`` is not run. timm encoders (``tu-``) are built
    with only the stages they use."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module) or not hasattr(encoder, "get_stages"):
        return []
    depth = len(encoder.out_channels) - 1  # smp: the input plus one feature map per stage run
    if depth >= 5:
        return []
    try:
        stages = encoder.get_stages()
    except NotImplementedError:
        return []
    unused = {id(m) for stride, modules in stages.items() if stride > 2**depth for m in modules}
    names = [name for name, m in encoder.named_modules() if id(m) in unused and name]
    for name in names:
        encoder.set_submodule(name, nn.Identity())
    return [f"encoder.{name}" for name in names]


def _build(
    arch: str,
    encoder_name: str,
    weights: str | bool | None,
    in_channels: int,
    num_classes: int,
    **kwargs: Any,
) -> nn.Module:
    """The network; ``weights`` is what the library takes: smp's weight-set name, or True for
    timm's default tag."""
    try:
        if arch in CLASSIC_ARCHS:
            return create_classic_model(
                arch, encoder_name, weights, in_channels, num_classes, **kwargs
            )
        model = smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=weights,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )
        drop_unused_stages(model)
        return model
    except (TypeError, ValueError, AssertionError) as e:
        # Arguments of another architecture (a recipe's decoder_channels list after switching
        # model.arch) fail deep inside its constructor, with a message that names neither.
        if not kwargs or isinstance(e, SeglabError):
            raise
        raise ConfigError(
            f"model.model_kwargs {kwargs} do not fit model.arch {arch!r} ({e}); give the "
            f"arguments {arch} takes, or --model.model_kwargs '{{}}' for its defaults"
        ) from None


def check_encoder_name(encoder_name: str) -> None:
    """Fail with the valid choices instead of smp's bare ``KeyError`` deep inside the
    constructor."""
    if encoder_name.startswith("tu-"):
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
