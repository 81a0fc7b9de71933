"""Your own data: per split, a directory of images and a directory of single-channel class-id masks.

Default layout (both directory templates are configurable, ``{split}`` is replaced)::

    root/train/images/0001.jpg   root/train/masks/0001.png
    root/val/images/...          root/val/masks/...
    root/test/images/...         root/test/masks/...      (optional)

Images and masks are paired by file stem. An optional list file per split (``{split}.txt`` under
``root``, one stem per line) selects and orders the samples. An image without a mask or a mask without
an image is an error, never a silently skipped sample.

Masks hold class ids (single-channel or palette PNGs), or, with ``palette``, RGB colours: the colour
at ``palette[i]`` is class ``i`` and ``ignore_color`` is ignored; any other colour is an error.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.dataset import SegmentationDataset
from seglab.data.io import (
    IMAGE_EXTENSIONS,
    DataError,
    colors_to_ids,
    read_image,
    read_mask,
    read_rgb_mask,
)
from seglab.errors import ConfigError


def _files_by_stem(directory: Path, what: str) -> dict[str, Path]:
    if not directory.is_dir():
        raise DataError(f"{directory}: {what} directory not found")
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(
                f"{path}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})"
            )
        if path.stem in files:
            raise DataError(
                f"{path}: two {what} files share the stem {path.stem!r} ({files[path.stem].name})"
            )
        files[path.stem] = path
    return files


def pair_files(
    image_dir: Path, mask_dir: Path, list_file: Path | None = None
) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs matched by stem, in list-file order or sorted by stem."""
    images = _files_by_stem(image_dir, "image")
    masks = _files_by_stem(mask_dir, "mask")
    if list_file is not None:
        stems = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        missing = [s for s in stems if s not in images or s not in masks]
        if missing:
            raise DataError(
                f"{list_file}: {len(missing)} listed samples lack an image or a mask, e.g. {missing[:5]}"
            )
        return [(images[s], masks[s]) for s in stems]
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        problems = []
        if no_mask:
            problems.append(f"{len(no_mask)} images without a mask in {mask_dir}: {no_mask[:5]}")
        if no_image:
            problems.append(
                f"{len(no_image)} masks without an image in {image_dir}: {no_image[:5]}"
            )
        raise DataError("; ".join(problems))
    return [(images[s], masks[s]) for s in sorted(images)]


class FolderDataset(SegmentationDataset):
    """``(image, mask)`` file pairs; with ``palette`` the masks are RGB colours mapped to class ids."""

    def __init__(
        self,
        pairs: list[tuple[Path, Path]],
        num_classes: int,
        palette: list[tuple[int, int, int]] | None = None,
        ignore_color: tuple[int, int, int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self.pairs = pairs
        self.palette = palette
        self.ignore_color = ignore_color

    def __len__(self) -> int:
        return len(self.pairs)

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
        return read_image(image_path), mask, str(image_path)


class FolderDataModule(SegmentationDataModule):
    """Images and class-id masks in per-split directories.

    Args:
        root: dataset directory.
        num_classes: number of classes (mask values ``0..num_classes-1``; others must be ``ignore_index``).
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
        if num_classes < 1:
            raise ConfigError(f"data.num_classes must be at least 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(
                f"data.class_names has {len(class_names)} names but data.num_classes is {num_classes}"
            )
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ConfigError(f"data.root: {self.root} is not a directory")
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
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

    def make_dataset(self, split: Split, transform) -> FolderDataset:
        list_file = self.root / self.list_file.format(split=split) if self.list_file else None
        if list_file is not None and not list_file.is_file():
            raise DataError(f"{list_file}: list file of the {split} split not found")
        pairs = pair_files(
            self.root / self.image_dir.format(split=split),
            self.root / self.mask_dir.format(split=split),
            list_file,
        )
        return FolderDataset(
            pairs,
            self.num_classes,
            self.palette,
            self.ignore_color,
            ignore_index=self.ignore_index,
            transform=transform,
        )
