"""What ``seglab check-data`` finds: every problem of every split at once, and the class histogram."""

from __future__ import annotations

import torch

from seglab.data.datamodule import SegmentationDataModule
from seglab.data.dataset import check_sample
from seglab.errors import DataError


def check(
    dm: SegmentationDataModule, splits: list[str], optional: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """All problems found, and per split the pixel count of each class. A split in ``optional``
    that cannot be opened is skipped with a note instead of a problem."""
    problems: list[str] = []
    histograms: dict[str, torch.Tensor] = {}
    for split in splits:
        try:
            dataset = dm.dataset(split)
        except DataError as e:
            if split in optional:
                print(f"note: no {split} split ({e})")
            else:
                problems.append(f"[{split}] {e}")
            continue
        if len(dataset) == 0:
            problems.append(f"[{split}] the split is empty")
            continue
        counts = torch.zeros(dm.num_classes, dtype=torch.long)
        for i in range(len(dataset)):
            try:
                image, mask, name = dataset.load(i)
                check_sample(image, mask, name, dm.num_classes, dm.ignore_index)
            except DataError as e:
                problems.append(f"[{split}] {e}")
                continue
            labels = mask[mask != dm.ignore_index].long()
            counts += torch.bincount(labels.flatten(), minlength=dm.num_classes)
        histograms[split] = counts
    return problems, histograms


def format_histogram(histograms: dict[str, torch.Tensor], class_names: list[str]) -> str:
    width = max(len(n) for n in class_names)
    lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>18}" for s in histograms)]
    for c, name in enumerate(class_names):
        cells = []
        for counts in histograms.values():
            share = 100 * counts[c].item() / max(1, counts.sum().item())
            cells.append(f"{counts[c].item():>10} {share:6.2f}%")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
