"""Segmentation losses and their weighted combinations.

Every loss takes raw logits ``(N, C, H, W)`` and an integer mask ``(N, H, W)`` and ignores the pixels
equal to ``ignore_index``: they contribute neither to the value nor to the gradient. The region losses
(Dice, Jaccard, Tversky, Lovász) sum over all pixels of a batch, which overflows in float16, so they
(and Focal) always run in float32, also under autocast.

For imbalanced classes: per-class weights of the cross-entropy derived from the training masks
(``class_weights_from_counts``: median-frequency balancing, or capped inverse frequency), and
cross-entropy over the hardest pixels only (``ohem``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses as smp_losses
from torch import Tensor, nn

from seglab.errors import ConfigError

LossName = Literal["ce", "ohem", "dice", "focal", "jaccard", "lovasz", "tversky"]
LOSS_NAMES: tuple[str, ...] = LossName.__args__
WeightRule = Literal["median_frequency", "inverse_frequency"]


def class_weights_from_counts(counts: Tensor, rule: WeightRule, cap: float = 10.0) -> list[float]:
    """Cross-entropy weights from per-sample class pixel counts ``(N, C)`` of the training split
    (ignored pixels not counted).

    - ``median_frequency`` (Eigen & Fergus, 2015; SegNet's CamVid recipe): ``freq_c`` = pixels of
      class ``c`` / all labelled pixels of the images in which ``c`` occurs, and
      ``weight_c = median(freq) / freq_c``, the median over the classes that occur.
    - ``inverse_frequency``: ``freq_c`` = pixels of ``c`` / all labelled pixels and
      ``weight_c = min(cap, 1 / (K freq_c))`` with ``K`` the number of classes that occur: 1 for
      every class when they are balanced.

    A class that never occurs gets weight 0 (it has no pixels to weigh)."""
    counts = counts.to(torch.float64)
    per_class = counts.sum(0)
    present = per_class > 0
    if not present.any():
        raise ConfigError("model.class_weights: the training masks have no labelled pixel")
    if rule == "median_frequency":
        pixels_of_images_with = ((counts > 0) * counts.sum(1, keepdim=True)).sum(0)
        freq = per_class / pixels_of_images_with.clamp_min(1)
        weights = freq[present].median() / freq
    elif rule == "inverse_frequency":
        freq = per_class / per_class.sum()
        weights = (1 / (int(present.sum()) * freq)).clamp(max=cap)
    else:
        raise ConfigError(
            f"model.class_weights: unknown rule {rule!r}; give median_frequency, "
            "inverse_frequency or a list of numbers"
        )
    return torch.where(present, weights, 0.0).tolist()


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


class OhemCrossEntropyLoss(CrossEntropyLoss):
    """Cross-entropy over the hard pixels only (online hard example mining, as mmsegmentation's
    OHEM pixel sampler): pixels whose predicted probability of their true class is below
    ``threshold``, and never fewer than the ``min_kept`` hardest labelled pixels of the batch.
    Ignored pixels are never kept. The mean is over the kept pixels (weighted by the class weights
    when given). No host synchronisation: the selection stays on the device."""

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        threshold: float = 0.7,
        min_kept: int = 100_000,
    ) -> None:
        super().__init__(ignore_index, class_weights)
        if not 0 < threshold <= 1 or min_kept < 0:
            raise ConfigError(
                f"model.ohem_threshold must be in (0, 1] and model.ohem_min_kept >= 0, "
                f"got {threshold} and {min_kept}"
            )
        self.threshold, self.min_kept = threshold, min_kept

    def kept(self, logits: Tensor, target: Tensor) -> Tensor:
        """The pixels the loss is taken over, ``(N, H, W)`` bool."""
        with torch.no_grad():
            valid = target != self.ignore_index
            safe = torch.where(valid, target, 0)
            prob = logits.float().softmax(1).gather(1, safe[:, None])[:, 0]
            prob = torch.where(valid, prob, 2.0)  # above any threshold: never kept
            ordered = prob.flatten().sort().values
            count = valid.sum().clamp(max=self.min_kept)
            kth = ordered[(count - 1).clamp(min=0)]  # the min_kept-th hardest probability
            kth = torch.where(count > 0, kth, -1.0)
            return valid & ((prob < self.threshold) | (prob <= kth))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = self.kept(logits, target)
        losses = F.cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index, reduction="none"
        )
        if self.weight is None:
            return (losses * keep).sum() / keep.sum().clamp_min(1)
        weights = self.weight[torch.where(keep, target, 0)] * keep
        return (losses * keep).sum() / weights.sum().clamp_min(1e-12)


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
    ohem: tuple[float, int] = (0.7, 100_000),
) -> nn.Module:
    """One loss by name; all but the cross-entropies come from segmentation-models-pytorch.
    ``ohem`` is the ``(threshold, min_kept)`` of the ``ohem`` loss."""
    if name == "ce":
        return CrossEntropyLoss(ignore_index, class_weights, label_smoothing)
    if name == "ohem":
        return OhemCrossEntropyLoss(ignore_index, class_weights, *ohem)
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
        ohem: tuple[float, int] = (0.7, 100_000),
    ) -> None:
        super().__init__()
        if not weights:
            raise ConfigError("model.loss: give at least one loss, e.g. {ce: 1.0}")
        self.weights = dict(weights)
        self.losses = nn.ModuleDict(
            {n: build_loss(n, ignore_index, class_weights, label_smoothing, ohem) for n in weights}
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for name, loss in self.losses.items():
            total = total + self.weights[name] * loss(logits, target)
        return total
