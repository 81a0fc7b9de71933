"""``seglab check-data --config X.yaml``: scan every split before spending GPU hours on it.

Reports all problems at once (unreadable, corrupt or truncated images, non-image files, images without
masks and masks without images, size mismatches, mask values that are neither a class id nor
``ignore_index``, wrong channel counts, empty splits), then a per-class pixel histogram. Exits with
status 1 if anything is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser

from seglab.data.datamodule import SegmentationDataModule
from seglab.data.datasets.base import check_sample
from seglab.data.io import DataError


def load_datamodule(config: str | Path) -> SegmentationDataModule:
    """The ``data`` section of an experiment file, instantiated (the model is not built)."""
    config = Path(config)
    if not config.is_file():
        raise SystemExit(f"--config: {config} not found")
    cfg = yaml.safe_load(config.read_text()) or {}
    if "data" not in cfg:
        raise SystemExit(f"{config}: has no data section")
    data = cfg["data"]
    ignore_index = (cfg.get("model") or {}).get("ignore_index", 255)
    if isinstance(data, dict):
        data.setdefault("init_args", {})["ignore_index"] = ignore_index
    parser = ArgumentParser(prog="seglab check-data")
    parser.add_subclass_arguments(SegmentationDataModule, "data", required=True)
    return parser.instantiate_classes(parser.parse_object({"data": data})).data


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


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="seglab check-data", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--splits", type=list[str] | None, default=None, help="default: all")
    args = parser.parse_args(argv)
    dm = load_datamodule(args.config)
    if args.splits:
        problems, histograms = check(dm, args.splits)
    else:  # every split; a dataset need not have a test split
        problems, histograms = check(dm, ["train", "val", "test"], optional=("test",))
    if histograms:
        print("Pixels per class (ignore_index excluded):")
        print(format_histogram(histograms, dm.class_names))
    if problems:
        print(f"\n{len(problems)} problem(s) found:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        raise SystemExit(1)
    print(f"\nNo problems in {', '.join(histograms)}.")
    return 0
