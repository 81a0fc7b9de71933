"""Your own data: per split, a directory of images and a directory of single-channel class-id masks.

Default layout (both directory templates are configurable, ``{split}`` is replaced)::

    root/train/images/0001.jpg   root/train/masks/0001.png
    root/val/images/...          root/val/masks/...
    root/test/images/...         root/test/masks/...      (optional)

Images and masks are paired by file stem. An optional list file per split (``{split}.txt`` under
``root``, one stem per line) selects and orders the samples. An image without a mask, a mask without
an image, a broken symbolic link or a non-image file is an error naming the file, never a silently
skipped sample; every such problem of a split is reported at once. Names starting with ``.`` and
subdirectories are not samples. An empty split is an error naming its directory.

Masks hold class ids (single-channel or palette PNGs), or, with ``palette``, RGB colours: the colour
at ``palette[i]`` is class ``i`` and ``ignore_color`` is ignored; any other colour is an error.
Images may be multi-band TIFF/GeoTIFF files (``seglab.data.io``); their nodata and transparent
pixels become ``ignore_index`` in the mask.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split, class_names_for
from seglab.data.datasets.base import SegmentationDataset
from seglab.data.exif import ExifOrientation
from seglab.data.io import (
    IMAGE_EXTENSIONS,
    SplitNotFound,
    colors_to_ids,
    file_problem,
    read_image_valid,
    read_mask,
    read_rgb_mask,
)
from seglab.errors import ConfigError


def _files_by_stem(directory: Path, what: str) -> tuple[dict[str, Path], list[str]]:
    """The ``what`` (image, mask) files of a directory by stem, and every problem found: a broken
    link, a file that is not an image, two files with one stem. Names starting with ``.`` and
    subdirectories are not samples and are passed over."""
    files: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if not path.is_file():  # a broken link: its stem still counts, its partner is no orphan
            problems.append(file_problem(path, what) or f"{path}: not a regular file")
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            problems.append(
                f"{path}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})"
            )
            continue
        if path.stem in files:
            problems.append(
                f"{path}: two {what} files share the stem {path.stem!r} ({files[path.stem].name})"
            )
        files[path.stem] = path
    return files, problems


def match_files(
    image_dir: Path, mask_dir: Path, list_file: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(image, mask)`` pairs matched by stem, in list-file order or sorted by stem, and one
    problem per file that cannot be part of a pair (an image without a mask, a mask without an
    image, a broken link, a non-image file, a stem listed but absent...), naming it. Missing
    directories raise ``SplitNotFound``."""
    dirs = ((image_dir, "image"), (mask_dir, "mask"))
    missing = [f"{d}: {what} directory not found" for d, what in dirs if not d.is_dir()]
    if missing:
        raise SplitNotFound(*missing)
    images, problems = _files_by_stem(image_dir, "image")
    masks, mask_problems = _files_by_stem(mask_dir, "mask")
    problems += mask_problems
    if list_file is not None:
        stems = []
        for number, line in enumerate(list_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            stem = line.split()[0]
            stems.append(stem)
            for found, directory, what in ((images, image_dir, "image"), (masks, mask_dir, "mask")):
                if stem not in found:
                    problems.append(f"{list_file}:{number}: {stem!r} has no {what} in {directory}")
    else:
        stems = sorted(images.keys() | masks.keys())
        for stem in stems:
            if stem not in masks:
                problems.append(f"{images[stem]}: image without a mask (no {stem}.* in {mask_dir})")
            elif stem not in images:
                problems.append(
                    f"{masks[stem]}: mask without an image (no {stem}.* in {image_dir})"
                )
    pairs = [(images[s], masks[s]) for s in stems if s in images and s in masks]
    return [(i, m) for i, m in pairs if i.is_file() and m.is_file()], problems


def unreadable_files(pairs: list[tuple[Path, Path]]) -> list[str]:
    """One problem per image or mask file of ``pairs`` that is missing or a broken link."""
    problems = []
    for image, mask in pairs:
        problems += [p for p in (file_problem(image, "image"), file_problem(mask, "mask")) if p]
    return problems


class FolderDataset(SegmentationDataset):
    """``(image, mask)`` file pairs; with ``palette`` the masks are RGB colours mapped to class ids;
    ``exif_orientation`` says what to do with images whose EXIF orientation is not 1."""

    def __init__(
        self,
        pairs: list[tuple[Path, Path]],
        num_classes: int,
        palette: list[tuple[int, int, int]] | None = None,
        ignore_color: tuple[int, int, int] | None = None,
        exif_orientation: ExifOrientation = "refuse",
        problems: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self.problems = list(problems or [])
        self.pairs = pairs
        self.palette = palette
        self.ignore_color = ignore_color
        self.exif_orientation = exif_orientation

    def __len__(self) -> int:
        return len(self.pairs)

    def image_file(self, index: int) -> Path:
        return self.pairs[index][0]

    def mask_file(self, index: int) -> Path:
        return self.pairs[index][1]

    def source_files(self, index: int) -> list[Path]:
        return list(self.pairs[index])

    def cache_settings(self) -> dict:
        return {k: v for k, v in super().cache_settings().items() if k != "pairs"}

    def load(self, index: int) -> tuple[Tensor, Tensor, str]:
        image_path, mask_path = self.pairs[index]
        if self.palette is None:
            mask = read_mask(mask_path)
        else:
            mask = colors_to_ids(
                read_rgb_mask(mask_path),
                self.palette,
                str(mask_path),
                self.ignore_color,
                self.ignore_index,
            )
        image, valid = read_image_valid(image_path, self.exif_orientation)
        if valid is not None and valid.shape == mask.shape:  # nodata counts nowhere
            fits = mask.dtype != torch.uint8 or 0 <= self.ignore_index <= 255
            mask = mask.clone() if fits else mask.long()
            mask[~valid] = self.ignore_index
        return image, mask, str(image_path)


class FolderDataModule(SegmentationDataModule):
    """Images and class-id masks in per-split directories.

    Args:
        root: dataset directory.
        num_classes: number of classes (mask values ``0..num_classes-1``; others must be
            ``ignore_index``).
        class_names: optional names, one per class.
        image_dir: image directory under ``root``; ``{split}`` becomes train/val/test.
        mask_dir: mask directory under ``root``, likewise.
        list_file: optional list of stems per split under ``root``, e.g. ``{split}.txt``.
        palette: for colour masks, the RGB colour of each class (class ``i`` at index ``i``).
        ignore_color: for colour masks, the colour of ignored pixels.
        **kwargs: the shared data settings of ``SegmentationDataModule``.
    """

    def __init__(
        self,
        root: str,
        num_classes: int,
        class_names: list[str] | None = None,
        image_dir: str = "{split}/images",
        mask_dir: str = "{split}/masks",
        list_file: str | None = None,
        palette: list[tuple[int, int, int]] | None = None,
        ignore_color: tuple[int, int, int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ConfigError(f"data.root: {self.root} is not a directory")
        self.num_classes = num_classes
        self.class_names = class_names_for(num_classes, class_names)
        self.image_dir, self.mask_dir, self.list_file = image_dir, mask_dir, list_file
        if palette is not None:
            palette = [tuple(c) for c in palette]
            if len(palette) != num_classes:
                raise ConfigError(
                    f"data.palette has {len(palette)} colours but data.num_classes is {num_classes}"
                )
            if len(set(palette)) != len(palette) or (
                ignore_color and tuple(ignore_color) in palette
            ):
                raise ConfigError(
                    "data.palette: every class (and ignore_color) needs its own colour"
                )
        elif ignore_color is not None:
            raise ConfigError("data.ignore_color needs data.palette (colour masks)")
        self.palette = palette
        self.ignore_color = tuple(ignore_color) if ignore_color is not None else None

    def make_dataset(self, split: Split) -> FolderDataset:
        list_file = self.root / self.list_file.format(split=split) if self.list_file else None
        if list_file is not None and not list_file.is_file():
            raise SplitNotFound(f"{list_file}: list file of the {split} split not found")
        image_dir = self.root / self.image_dir.format(split=split)
        mask_dir = self.root / self.mask_dir.format(split=split)
        pairs, problems = match_files(image_dir, mask_dir, list_file)
        if not pairs and not problems:
            source = f"{list_file} lists no samples" if list_file else f"no images in {image_dir}"
            problems = [f"the {split} split is empty: {source}"]
        return FolderDataset(
            pairs,
            self.num_classes,
            self.palette,
            self.ignore_color,
            exif_orientation=self.exif_orientation,
            problems=problems,
            ignore_index=self.ignore_index,
        )
