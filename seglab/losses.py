"""Segmentation losses and their weighted combinations.

Every loss takes raw logits ``(N, C, H, W)`` and an integer mask ``(N, H, W)`` and ignores the pixels
equal to ``ignore_index``: they contribute neither to the value nor to the gradient. The region losses
(Dice, Jaccard, Tversky, Lovász) sum over all pixels of a batch, which overflows in float16, so they
(and Focal) always run in float32, also under autocast.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses as smp_losses
from torch import Tensor, nn

from seglab.errors import ConfigError

LossName = Literal["ce", "dice", "focal", "jaccard", "lovasz", "tversky"]
LOSS_NAMES: tuple[str, ...] = LossName.__args__


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy; the mean is taken over the pixels that are not ignored."""

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class Float32Loss(nn.Module):
    """Runs a region loss in float32 with autocast off: its pixel sums overflow in half precision."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.loss(logits.float(), target)


def build_loss(
    name: str,
    ignore_index: int = 255,
    class_weights: list[float] | None = None,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """One loss by name; all but cross-entropy come from segmentation-models-pytorch."""
    if name == "ce":
        return CrossEntropyLoss(ignore_index, class_weights, label_smoothing)
    region = {
        "focal": smp_losses.FocalLoss,
        "dice": smp_losses.DiceLoss,
        "jaccard": smp_losses.JaccardLoss,
        "lovasz": smp_losses.LovaszLoss,
        "tversky": smp_losses.TverskyLoss,
    }
    if name not in region:
        raise ConfigError(f"model.loss: unknown loss {name!r}; choose from {', '.join(LOSS_NAMES)}")
    kwargs = {} if name in ("focal", "lovasz") else {"from_logits": True}
    return Float32Loss(region[name]("multiclass", ignore_index=ignore_index, **kwargs))


class CombinedLoss(nn.Module):
    """A weighted sum of named losses, e.g. ``{"ce": 1.0, "dice": 0.5}``."""

    def __init__(
        self,
        weights: dict[str, float],
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not weights:
            raise ConfigError("model.loss: give at least one loss, e.g. {ce: 1.0}")
        self.weights = dict(weights)
        self.losses = nn.ModuleDict(
            {n: build_loss(n, ignore_index, class_weights, label_smoothing) for n in weights}
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for name, loss in self.losses.items():
            total = total + self.weights[name] * loss(logits, target)
        return total
