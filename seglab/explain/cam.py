"""Where does the model look? Grad-CAM and input-gradient saliency for semantic segmentation.

Grad-CAM (Selvaraju et al., ICCV 2017, https://arxiv.org/abs/1610.02391) weights a layer's feature
maps by the spatial mean of the gradient of a target score and keeps the positive part. For
segmentation the target is the sum of a class's logit over the pixels predicted as that class
(Vinogradova et al., "Towards Interpretable Semantic Segmentation via Gradient-weighted Class
Activation Mapping", AAAI 2020), so the map explains the class's predicted region as a whole.

Implemented with a forward hook and ``torch.autograd.grad`` rather than the ``grad-cam`` package:
that package pulls in OpenCV, matplotlib, scikit-learn and SciPy for what is a dozen lines here. It
is offered as the ``explain`` extra (``pip install seglab[explain]``) for its other CAM variants;
they take the same ``SegmentationTarget``-style target (see ``class_target``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize
from seglab.errors import ConfigError


def class_target(logits: Tensor, class_index: int) -> Tensor:
    """Per-image sum of the class logit over the pixels predicted as that class; where no pixel is
    predicted as the class, over all pixels (an empty region would explain nothing)."""
    selected = logits.argmax(1) == class_index
    empty = ~selected.flatten(1).any(1)
    selected = selected | empty[:, None, None]
    return (logits[:, class_index] * selected).flatten(1).sum(1)


def deepest_feature(output: object) -> Tensor:
    """The hooked layer's activation: the tensor itself, or for encoders returning several feature
    maps (lists, tuples, with or without pooling indices), the last floating-point one (deepest)."""
    found: list[Tensor] = []

    def collect(item: object) -> None:
        if isinstance(item, Tensor) and item.is_floating_point() and item.ndim == 4:
            found.append(item)
        elif isinstance(item, (list, tuple)):
            for sub in item:
                collect(sub)

    collect(output)
    if not found:
        raise ConfigError(
            f"--layer: the layer's output ({type(output).__name__}) has no feature map"
        )
    return found[-1]


def resolve_layer(model: nn.Module, path: str | None) -> nn.Module:
    """``path`` is a dotted module path inside ``model`` (default: ``encoder``, whose deepest
    feature map is the last encoder stage)."""
    path = path or "encoder"
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n and n.count(".") < 2][:30]
        raise ConfigError(
            f"--layer: the model has no module {path!r}; some of its modules: {', '.join(names)}"
        ) from None


def normalise(maps: Tensor) -> Tensor:
    """Each map scaled to [0, 1] (all-zero maps stay zero)."""
    flat = maps.flatten(1)
    low = flat.min(1).values[:, None, None]
    span = (flat.max(1).values - flat.min(1).values).clamp_min(1e-12)[:, None, None]
    return (maps - low) / span


def grad_cam(
    model: nn.Module, image: Tensor, class_index: int, layer: nn.Module, forward=None
) -> Tensor:
    """Grad-CAM maps ``(N, H, W)`` in [0, 1] at the image's size.

    ``model`` holds ``layer``; ``forward`` (default ``model``) maps the image to logits, e.g. a
    ``SegmentationModule`` that pads odd sizes around its inner network."""
    captured: list[Tensor] = []

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        captured.append(deepest_feature(output))

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = (forward or model)(image)
            if not captured:
                raise ConfigError(
                    "--layer: the chosen layer did not run in the forward pass; "
                    "name a module that the model's forward calls (e.g. encoder)"
                )
            activation = captured[-1]
            (grads,) = torch.autograd.grad(class_target(logits, class_index).sum(), activation)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return normalise(cam[:, 0])


def input_saliency(forward: nn.Module, image: Tensor, class_index: int) -> Tensor:
    """Gradient saliency (Simonyan et al., 2014): ``|d target / d pixel|``, maximum over channels,
    ``(N, H, W)`` in [0, 1]."""
    image = image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(class_target(forward(image), class_index).sum(), image)
    return normalise(grads.abs().amax(1))


def colormap(heat: np.ndarray) -> np.ndarray:
    """A blue-cyan-yellow-red ("jet"-like) RGB ``uint8`` image of a map in [0, 1], without
    matplotlib."""
    x = np.clip(heat, 0, 1)[..., None]
    red = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.concatenate([red, green, blue], -1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heat map's colours blended over an RGB ``uint8`` image ``(H, W, 3)``."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colormap(heat).astype(np.float32)
    return blended.round().astype(np.uint8)


def explain_image(
    module: nn.Module,
    image: Tensor,
    target_class: int,
    layer: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> dict[str, np.ndarray]:
    """``gradcam`` and ``saliency`` maps ``(H, W)`` in [0, 1] of a ``uint8`` image ``(3, H, W)``
    for a segmentation module (with the network as ``module.model``), normalised as it was
    trained."""
    module.eval()
    param = next(module.parameters())
    x = normalize(image.to(param.device), mean, std)[None]
    cam = grad_cam(
        module.model, x, target_class, resolve_layer(module.model, layer), forward=module
    )
    saliency = input_saliency(module, x, target_class)
    return {"gradcam": cam[0].cpu().numpy(), "saliency": saliency[0].cpu().numpy()}
