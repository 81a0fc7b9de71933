"""What ``seglab check-data`` runs: every sample of every split read and checked once, before
training.

Samples are read as training reads them, through ``SegmentationDataset.read`` (decode and check),
straight from the files: no decoded cache, no transform. Training stops at the first bad sample;
this scan goes on and collects every problem, each naming its file (the mask for mask problems, a
broken link and its target, the split and directory for an empty or missing split); when reading
stopped at a mask it also reads the image for its own problems. It also counts the samples and the
pixels of each class per split, notes how images were converted (grey, palette, alpha, CMYK, EXIF
orientation), and warns about masks that look like they passed through lossy compression or
interpolation. Checks that cost time live here and in the decoded-sample cache build, not in every
training read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from torch import Tensor

from seglab.data.datasets.base import SegmentationDataset
from seglab.data.exif import ORIENTATIONS, exif_orientation
from seglab.data.io import (
    CONVERSIONS,
    DataError,
    SplitNotFound,
    is_multiband_tiff,
    read_image,
)
from seglab.data.stats import label_counts

# A mask is reported as photo-like when at least this share of its boundary pixels (and this many
# pixels) hold a class id strictly between their two neighbours' along a row or column: what JPEG
# ringing and bilinear resizing leave. Drawn masks stay near 1% (thin structures whose id happens to
# lie between their neighbours'); damaged masks of 3 or more classes mostly reach 7-45%.
PHOTO_LIKE_SHARE = 0.03
PHOTO_LIKE_MIN_PIXELS = 16


class SplitSource(Protocol):
    """What the checks need of a data module (``SegmentationDataModule`` is one)."""

    num_classes: int
    ignore_index: int

    def download_data(self) -> None: ...

    def make_dataset(self, split: str) -> SegmentationDataset: ...


@dataclass
class SplitReport:
    """One split's findings: ``samples`` is ``None`` when the split could not be listed."""

    split: str
    samples: int | None = None
    pixels: Tensor | None = None  # pixels per class, ignore_index excluded
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def interpolated_boundary_share(mask: Tensor, ignore_index: int) -> tuple[int, float]:
    """How many pixels, and what share of the boundary pixels, hold a class id strictly between
    their left and right (or upper and lower) neighbours' ids. Drawn label maps almost never do;
    JPEG artefacts and interpolation put such in-between ids along every edge. ``ignore_index``
    pixels take no part."""
    m = mask.long()
    if m.shape[-1] < 3 or m.shape[-2] < 3:
        return 0, 0.0
    centre = m[1:-1, 1:-1]
    neighbours = ((m[1:-1, :-2], m[1:-1, 2:]), (m[:-2, 1:-1], m[2:, 1:-1]))
    valid = centre != ignore_index
    between = torch.zeros_like(valid)
    boundary = torch.zeros_like(valid)
    for a, b in neighbours:
        pair_valid = valid & (a != ignore_index) & (b != ignore_index)
        between |= pair_valid & (((a < centre) & (centre < b)) | ((b < centre) & (centre < a)))
        boundary |= pair_valid & ((a != centre) | (b != centre))
    count = int(between.sum())
    return count, count / max(1, int(boundary.sum()))


def _image_notes(path: Path, exif_setting: str) -> list[tuple[str, str]]:
    """``(what was done, file)`` for an image converted by a rule or turned by its EXIF
    orientation."""
    try:
        with Image.open(path) as im:
            multiband = is_multiband_tiff(im)
            rule, orientation = CONVERSIONS.get(im.mode), exif_orientation(im)
    except (OSError, ValueError):  # not a PIL image: a raster read band by band
        multiband, orientation = True, 1
    if multiband:
        return [("multi-band raster, every band read as stored (seglab.data.io)", str(path))]
    notes = [(rule, str(path))] if rule else []
    if orientation != 1:
        done = "turned as viewers show it" if exif_setting == "apply" else "used as stored"
        notes.append(
            (
                f"EXIF orientation other than 1, {done} (data.exif_orientation: {exif_setting})",
                f"{path} (orientation {orientation}: {ORIENTATIONS[orientation]})",
            )
        )
    return notes


def _unread_image_problems(dataset: SegmentationDataset, index: int, known: list[str]) -> list[str]:
    """The image's own problems when reading a sample stopped before the image was read (at its
    mask), so that one run reports both files (none when the image read fine, or its problem is
    already known)."""
    image_file = dataset.image_file(index)
    if image_file is None or any(p.startswith(f"{image_file}:") for p in known):
        return []
    try:
        read_image(image_file, getattr(dataset, "exif_orientation", "refuse"))
    except DataError as e:
        return e.problems
    return []


def check_split(dataset: SegmentationDataset, report: SplitReport) -> None:
    """Reads and checks every sample of ``dataset`` (``read``) into ``report``, going on after a
    bad one."""
    num_classes, ignore_index = dataset.num_classes, dataset.ignore_index
    report.samples = len(dataset)
    report.pixels = torch.zeros(num_classes, dtype=torch.long)
    exif_setting = getattr(dataset, "exif_orientation", "refuse")
    notes: dict[str, list[str]] = defaultdict(list)
    noted: set[Path] = set()
    # per (image file, band): the lowest and highest labelled value outside the dataset's
    # valid_range, over all its samples (a raster's windows): one line per file and band
    out_of_range: dict[tuple[Path, int], list[float]] = {}
    value_problems = getattr(dataset, "value_problems", None)
    for index in range(len(dataset)):
        try:
            image, mask, name = dataset.read(index)
        except DataError as e:
            report.problems += e.problems + _unread_image_problems(dataset, index, e.problems)
            continue
        if value_problems is not None:
            for band, low, high in value_problems(image, mask):
                key = (dataset.image_file(index) or Path(name), band)
                seen = out_of_range.setdefault(key, [low, high])
                seen[0], seen[1] = min(seen[0], low), max(seen[1], high)
        mask_file = dataset.mask_file(index)
        report.pixels += label_counts(mask.long(), ignore_index, num_classes)[:num_classes]
        count, share = interpolated_boundary_share(mask, ignore_index)
        if count >= PHOTO_LIKE_MIN_PIXELS and share >= PHOTO_LIKE_SHARE:
            report.warnings.append(
                f"{mask_file or name}: mask looks photo-like: {100 * share:.0f}% of its boundary "
                "pixels hold a class id between their neighbours' (what lossy compression or "
                "interpolation leaves); export it again from the annotation tool, resize masks "
                "with nearest neighbour"
            )
        image_file = dataset.image_file(index)
        if image_file is not None and image_file not in noted:
            noted.add(image_file)
            for what, file in _image_notes(image_file, exif_setting):
                notes[what].append(file)
    for (file, band), (low, high) in out_of_range.items():
        expected = list(dataset.valid_range[band])
        report.problems.append(
            f"{file}: band {band + 1} has labelled values from {low:g} to {high:g}, outside "
            f"data.valid_range {expected}"
        )
    for what, files in notes.items():
        more = f" and {len(files) - 1} more" if len(files) > 1 else ""
        report.notes.append(f"{len(files)} images: {what}: {files[0]}{more}")


def check_data(
    dm: SplitSource, splits: list[str], optional: tuple[str, ...] = ()
) -> dict[str, SplitReport]:
    """Every split's report. A split in ``optional`` that does not exist gets a note, not a problem;
    one that exists is checked like the others."""
    reports = {}
    try:
        dm.download_data()
        downloaded: DataError | None = None
    except DataError as e:
        downloaded = e
    for split in splits:
        report = reports[split] = SplitReport(split)
        if downloaded is not None:
            report.problems += [
                *downloaded.problems,
                *([downloaded.hint] if downloaded.hint else []),
            ]
            continue
        try:  # without transforms, and without building a decoded-sample cache
            dataset = dm.make_dataset(split)
        except SplitNotFound as e:
            if split in optional:
                report.notes.append(f"no {split} split ({'; '.join(e.problems)})")
            else:
                report.problems += [*e.problems, *([e.hint] if e.hint else [])]
            continue
        except DataError as e:
            report.problems += [*e.problems, *([e.hint] if e.hint else [])]
            continue
        report.problems += dataset.problems
        if len(dataset) == 0 and not dataset.problems:
            report.problems.append(f"the {split} split of {type(dm).__name__} is empty")
        check_split(dataset, report)
    return reports


def format_histogram(reports: dict[str, SplitReport], class_names: list[str]) -> str:
    """A table of the pixels of each class (count and share) per split."""
    counted = {s: r.pixels for s, r in reports.items() if r.samples}
    width = max((len(n) for n in ["class", *class_names]), default=5)
    lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>18}" for s in counted)]
    for c, name in enumerate(class_names):
        cells = []
        for counts in counted.values():
            share = 100 * counts[c].item() / max(1, counts.sum().item())
            cells.append(f"{counts[c].item():>10} {share:6.2f}%")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
