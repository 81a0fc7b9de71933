"""Segmentation metrics from a confusion matrix accumulated over a whole split.

IoU and Dice are computed from per-class pixel counts summed over every image of the split (never an
average of per-image scores). Classes that occur neither in the prediction nor in the target have no
score (NaN) and are left out of the means. Pixels equal to ``ignore_index`` are counted nowhere.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ConfusionMatrix(Metric):
    """``confmat[t, p]`` = number of pixels of true class ``t`` predicted as ``p``.

    torchmetrics' own ``MulticlassConfusionMatrix`` drops ignored pixels with boolean indexing,
    which forces a device-to-host sync at every step; here ignored pixels go to an overflow bin with
    ``index_add_`` so ``update`` never waits for the device. The state is summed across ranks by
    torchmetrics when the metric is computed.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: class ids or ``(N, C, ...)`` scores; ``target``: class ids."""
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(1)
        c = self.num_classes
        target = target.reshape(-1).long()
        preds = preds.reshape(-1).long()
        valid = (target != self.ignore_index) & (target >= 0) & (target < c)
        bins = torch.where(valid, target * c + preds.clamp(0, c - 1), c * c)
        counts = torch.zeros(c * c + 1, dtype=torch.long, device=bins.device)
        counts.index_add_(0, bins, torch.ones_like(bins))
        self.confmat += counts[: c * c].view(c, c)

    def compute(self) -> Tensor:
        return self.confmat


def scores_from_confusion(confmat: Tensor) -> dict[str, Tensor]:
    """Per-class IoU/Dice/accuracy and their means from a ``(C, C)`` confusion matrix."""
    cm = confmat.double()
    tp = cm.diagonal()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    nan = torch.tensor(float("nan"), dtype=cm.dtype, device=cm.device)
    union = tp + fp + fn
    iou = torch.where(union > 0, tp / union, nan)
    dice = torch.where(union > 0, 2 * tp / (2 * tp + fp + fn), nan)
    support = tp + fn
    class_acc = torch.where(support > 0, tp / support, nan)
    total = cm.sum()
    acc = tp.sum() / total if total > 0 else nan
    return {
        "IoU": iou,
        "dice_per_class": dice,
        "acc_per_class": class_acc,
        "mIoU": iou.nanmean(),
        "dice": dice.nanmean(),
        "acc": acc,
        "mAcc": class_acc.nanmean(),
    }


def metric_dict(confmat: Tensor, prefix: str, class_names: list[str]) -> dict[str, Tensor]:
    """The logged metric names: ``{prefix}/mIoU``, ``{prefix}/IoU/<class>`` ... (float32 values)."""
    s = scores_from_confusion(confmat)
    out = {f"{prefix}/{k}": s[k].float() for k in ("mIoU", "dice", "acc", "mAcc")}
    for name, value in zip(class_names, s["IoU"], strict=True):
        out[f"{prefix}/IoU/{name}"] = value.float()
    return out
