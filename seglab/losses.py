"""Segmentation losses: ``nn.Module``s called as ``loss(logits, mask)``, each holding its options.

``SegmentationModule(loss=...)`` takes any such module (by ``class_path`` in a config): these, the
losses of segmentation-models-pytorch (``segmentation_models_pytorch.losses.DiceLoss`` with
``mode: multiclass`` ...), torch's, or a user's own. Logits are ``(N, C, H, W)``, the mask
``(N, H, W)`` of class ids, with ``ignore_index`` marking pixels that must contribute neither to
the value nor to the gradient. The module runs every loss in float32 with autocast off (the region
losses' pixel sums overflow in float16) and gives it its ``ignore_index`` (``bind_ignore_index``).

Short forms for the common cases are sugar for the same classes (``build_loss``): ``ce``,
``ohem``, ``dice``, ``focal``, ``jaccard``, ``lovasz``, ``tversky``, or a weighted sum
``{ce: 1.0, dice: 0.5}``.

For imbalanced classes: cross-entropy weights given as numbers or as a rule computed once from the
training masks when fit starts (``class_weights_from_counts``: median-frequency balancing, or capped
inverse frequency), and cross-entropy over the hardest pixels only (``OhemCrossEntropyLoss``).

A loss whose constructor arguments should be recorded in checkpoints (so that
``SegmentationModule.load_from_checkpoint`` rebuilds it) derives from Lightning's
``HyperparametersMixin`` and calls ``self.save_hyperparameters()``, as these do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.core.mixins import HyperparametersMixin
from segmentation_models_pytorch import losses as smp_losses
from torch import Tensor, nn

from seglab.errors import ConfigError

LossName = Literal["ce", "ohem", "dice", "focal", "jaccard", "lovasz", "tversky"]
WeightRule = Literal["median_frequency", "inverse_frequency"]
WEIGHT_RULES: tuple[str, ...] = WeightRule.__args__


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
        raise ConfigError("class_weights: the training masks have no labelled pixel")
    if rule == "median_frequency":
        pixels_of_images_with = ((counts > 0) * counts.sum(1, keepdim=True)).sum(0)
        freq = per_class / pixels_of_images_with.clamp_min(1)
        weights = freq[present].median() / freq
    elif rule == "inverse_frequency":
        freq = per_class / per_class.sum()
        weights = (1 / (int(present.sum()) * freq)).clamp(max=cap)
    else:
        raise ConfigError(
            f"class_weights: unknown rule {rule!r}; give {' or '.join(WEIGHT_RULES)} or a list"
        )
    return torch.where(present, weights, 0.0).tolist()


class CrossEntropyLoss(HyperparametersMixin, nn.Module):
    """Pixel-wise cross-entropy; the mean is taken over the pixels that are not ignored.

    Args:
        class_weights: a weight per class, or a rule computed once from the training split's masks
            when fit starts (``median_frequency``: SegNet's CamVid recipe, or ``inverse_frequency``
            capped at ``class_weight_cap``; see ``class_weights_from_counts``). The numbers are kept
            in the loss's state, so checkpoints and resumed runs use the very weights computed.
        class_weight_cap: the largest weight ``inverse_frequency`` gives.
        label_smoothing: label smoothing of the targets (torch's ``cross_entropy``).
        ignore_index: mask value to ignore; ``None``: the segmentation module's ``ignore_index``.
    """

    def __init__(
        self,
        class_weights: list[float] | WeightRule | None = None,
        class_weight_cap: float = 10.0,
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if isinstance(class_weights, str) and class_weights not in WEIGHT_RULES:
            raise ConfigError(
                f"class_weights: unknown rule {class_weights!r}; give a list of numbers or one of "
                f"{', '.join(WEIGHT_RULES)}"
            )
        if isinstance(class_weights, list | tuple) and min(class_weights, default=0) < 0:
            raise ConfigError(f"class_weights must not be negative, got {list(class_weights)}")
        if not class_weight_cap > 0:
            raise ConfigError(f"class_weight_cap must be positive, got {class_weight_cap}")
        if not 0 <= label_smoothing <= 1:
            raise ConfigError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.weight_rule = class_weights if isinstance(class_weights, str) else None
        self.class_weight_cap = class_weight_cap
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        weight = None
        if isinstance(class_weights, list | tuple):
            weight = torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("weight", weight)

    @property
    def needs_class_counts(self) -> bool:
        """Whether the weights are a rule still waiting for the training masks' class counts."""
        return self.weight_rule is not None and self.weight is None

    def fit_class_counts(self, counts: Tensor) -> list[float]:
        """Turns the weight rule into numbers from per-sample class counts ``(N, C)``."""
        weights = class_weights_from_counts(counts, self.weight_rule, self.class_weight_cap)
        device = next((b.device for b in self.buffers()), counts.device)
        self.weight = torch.tensor(weights, dtype=torch.float32, device=device)
        return weights

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Weights computed from a rule exist only once fit started: make room for the saved ones.
        saved = state_dict.get(prefix + "weight")
        if self.weight is None and saved is not None:
            self.weight = torch.empty_like(saved)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _checked_weight(self, num_classes: int) -> Tensor | None:
        if self.needs_class_counts:
            raise ConfigError(
                f"class_weights: {self.weight_rule} is computed from the training masks when fit "
                "starts (SegmentationModule does it); this loss ran before: give the weights as "
                "numbers, or call fit_class_counts(seglab.data.stats.class_pixel_counts(...))"
            )
        if self.weight is not None and len(self.weight) != num_classes:
            raise ConfigError(
                f"class_weights has {len(self.weight)} entries but the model predicts "
                f"{num_classes} classes"
            )
        return self.weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            logits,
            target,
            weight=self._checked_weight(logits.shape[1]),
            ignore_index=_ignored(self),
            label_smoothing=self.label_smoothing,
        )


class OhemCrossEntropyLoss(CrossEntropyLoss):
    """Cross-entropy over the hard pixels only (online hard example mining, as mmsegmentation's
    OHEM pixel sampler): pixels whose predicted probability of their true class is below
    ``threshold``, and never fewer than the ``min_kept`` hardest labelled pixels of the batch.
    Ignored pixels are never kept. The mean is over the kept pixels (weighted by the class weights
    when given). No host synchronisation: the selection stays on the device.

    Args:
        threshold: pixels whose true-class probability is below this are hard.
        min_kept: at least this many of the hardest labelled pixels are kept.
        class_weights, class_weight_cap, ignore_index: as ``CrossEntropyLoss``.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        min_kept: int = 100_000,
        class_weights: list[float] | WeightRule | None = None,
        class_weight_cap: float = 10.0,
        ignore_index: int | None = None,
    ) -> None:
        if not 0 < threshold <= 1 or min_kept < 0:
            raise ConfigError(
                f"OhemCrossEntropyLoss: threshold must be in (0, 1] and min_kept >= 0, got "
                f"{threshold} and {min_kept}"
            )
        super().__init__(class_weights, class_weight_cap, 0.0, ignore_index)
        self.save_hyperparameters()
        self.threshold, self.min_kept = threshold, min_kept

    def kept(self, logits: Tensor, target: Tensor) -> Tensor:
        """The pixels the loss is taken over, ``(N, H, W)`` bool."""
        with torch.no_grad():
            valid = target != _ignored(self)
            safe = torch.where(valid, target, 0)
            prob = logits.float().softmax(1).gather(1, safe[:, None])[:, 0]
            prob = torch.where(valid, prob, 2.0)  # above any threshold: never kept
            ordered = prob.flatten().sort().values
            count = valid.sum().clamp(max=self.min_kept)
            kth = ordered[(count - 1).clamp(min=0)]  # the min_kept-th hardest probability
            kth = torch.where(count > 0, kth, -1.0)
            return valid & ((prob < self.threshold) | (prob <= kth))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        weight = self._checked_weight(logits.shape[1])
        keep = self.kept(logits, target)
        losses = F.cross_entropy(
            logits, target, weight=weight, ignore_index=_ignored(self), reduction="none"
        )
        if weight is None:
            return (losses * keep).sum() / keep.sum().clamp_min(1)
        weights = weight[torch.where(keep, target, 0)] * keep
        return (losses * keep).sum() / weights.sum().clamp_min(1e-12)


class WeightedSum(HyperparametersMixin, nn.Module):
    """``sum_i weights[i] * losses[i](logits, mask)``, e.g. cross-entropy plus half a Dice loss.

    Args:
        losses: the losses (any ``nn.Module`` called as ``loss(logits, mask)``).
        weights: one weight per loss; default 1 each.
    """

    def __init__(self, losses: list[nn.Module], weights: list[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if not losses or len(weights) != len(losses):
            raise ConfigError(
                f"WeightedSum: give at least one loss and one weight per loss, got {len(losses)} "
                f"losses and {len(weights)} weights"
            )
        self.losses = nn.ModuleList(losses)
        self.weights = weights

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for weight, loss in zip(self.weights, self.losses, strict=True):
            total = total + weight * loss(logits, target)
        return total


def _ignored(loss: nn.Module) -> int:
    """The mask value a seglab loss ignores (255 until a module binds its own)."""
    return 255 if loss.ignore_index is None else loss.ignore_index


# The short forms: each name builds one of the classes above or of smp's, with their defaults.
SHORT_FORMS: dict[str, Callable[[], nn.Module]] = {
    "ce": CrossEntropyLoss,
    "ohem": OhemCrossEntropyLoss,
    "dice": lambda: smp_losses.DiceLoss("multiclass", from_logits=True),
    "focal": lambda: smp_losses.FocalLoss("multiclass"),
    "jaccard": lambda: smp_losses.JaccardLoss("multiclass", from_logits=True),
    "lovasz": lambda: smp_losses.LovaszLoss("multiclass"),
    "tversky": lambda: smp_losses.TverskyLoss("multiclass", from_logits=True),
}


def build_loss(spec: nn.Module | str | dict[str, float]) -> nn.Module:
    """A loss module from a module (as is), a short name, or ``{name: weight}`` (a
    ``WeightedSum``)."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        if spec not in SHORT_FORMS:
            raise ConfigError(
                f"model.loss: unknown loss {spec!r}; give a loss module by class_path or one of "
                f"{', '.join(SHORT_FORMS)}"
            )
        return SHORT_FORMS[spec]()
    if isinstance(spec, dict) and spec and all(isinstance(k, str) for k in spec):
        return WeightedSum([build_loss(name) for name in spec], list(spec.values()))
    raise ConfigError(
        f"model.loss: give a loss module (class_path), a name or {{name: weight}}, got {spec!r}"
    )


def bind_ignore_index(loss: nn.Module, ignore_index: int) -> None:
    """Gives every part of ``loss`` with an ``ignore_index`` of ``None`` the module's, and refuses a
    part that ignores another value (it would learn the ignored pixels as a class, or fail on them
    with an index error or a CUDA device-side assert)."""
    for name, part in loss.named_modules():
        if not hasattr(part, "ignore_index"):
            continue
        if part.ignore_index is None:
            part.ignore_index = ignore_index
        elif part.ignore_index != ignore_index:
            where = f"{type(part).__name__}" + (f" ({name})" if name else "")
            raise ConfigError(
                f"model.loss: {where} ignores mask value {part.ignore_index} but "
                f"model.ignore_index is {ignore_index}: set the loss's ignore_index to "
                f"{ignore_index} (or null on seglab's losses, which take the module's)"
            )


def needing_class_counts(loss: nn.Module) -> list[nn.Module]:
    """The parts of ``loss`` whose class weights wait for the training masks' class counts."""
    return [part for part in loss.modules() if getattr(part, "needs_class_counts", False)]
