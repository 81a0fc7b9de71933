"""Decoded-sample cache: decode every image and mask once into one memory-mapped file, behind a
dataset wrapper with the dataset's own read interface.

Where it sits in the data path: ``SegmentationDataset.read`` (decode and check) -> ``DecodedCache``
(this wrapper: ``open_cache(dataset, cache_dir, split)``) -> ``TransformedDataset`` (scale, crop,
augment, normalise) -> batches. ``DecodedCache.read(i)`` returns what ``dataset.read(i)`` returned
when the cache was built, without decoding or checking again; ``image_file``, ``mask_file``,
``problems``, ``num_classes`` and ``ignore_index`` are the dataset's.

Decoding a 1024x2048 PNG costs tens of milliseconds per sample per epoch; reading the decoded uint8
pixels back from the page cache costs well under one. ``data.cache_dir`` turns it on:

    cache_dir/<split>-<DatasetType>-<settings hash>/
        index.json      per sample: name, source files (path, size, mtime_ns), byte offsets, shapes
        data-<id>.bin   image (C,H,W) uint8 (float32 for non-uint8 bands) then mask (H,W) bytes
                        of every sample, 64-byte aligned

The directory name hashes the dataset type and every setting that changes decoded content (label
mappings, palettes, ``ignore_index``: ``SegmentationDataset.cache_settings``) and the directories
the files come from. A sample is decoded again when one of its source files (``source_files``)
changed size or modification time, appeared or disappeared; unchanged samples are copied from the
previous data file. The new data file and index are written under new names and renamed into place,
under an exclusive ``flock`` on ``<dir>.lock``: any number of processes (DataLoader workers, DDP
ranks, nodes sharing the file system) can open the cache while one builds it, and readers only ever
see a complete index. Workers receive only the index (offsets, shapes, names) and open the file
read-only themselves.

Masks are stored in the narrowest integer type that holds the class ids and ``ignore_index`` (uint8
normally). Samples are read and checked once, through ``dataset.read``, when the cache is built.
``seglab cache --config X.yaml`` builds the caches of an experiment ahead of training.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from seglab.data.datasets.base import SegmentationDataset, as_sample
from seglab.errors import DataError

FORMAT = 1
_ALIGN = 64


def _canonical(value: Any) -> Any:
    """A JSON-able, order-stable form of a dataset setting, for hashing."""
    if isinstance(value, Tensor):
        return {"dtype": str(value.dtype), "shape": list(value.shape), "values": value.tolist()}
    if isinstance(value, np.ndarray):
        return _canonical(torch.from_numpy(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def mask_dtype(num_classes: int, ignore_index: int) -> np.dtype:
    """The narrowest integer type holding ``0..num_classes-1`` and ``ignore_index``."""
    low, high = min(0, ignore_index), max(num_classes - 1, ignore_index)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _file_stats(dataset: SegmentationDataset, index: int) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each source file of a sample; a missing file has ``-1``s."""
    stats = []
    for path in dataset.source_files(index):
        try:
            st = os.stat(path)
            stats.append([str(path), st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            stats.append([str(path), -1, -1])
    return stats


def cache_dir_for(dataset: SegmentationDataset, cache_dir: str | Path, split: str) -> Path:
    """The directory of one split's cache: its name hashes what decides the decoded content."""
    try:
        settings = dataset.cache_settings()
        dirs = sorted(
            {str(Path(p).parent) for i in range(len(dataset)) for p in dataset.source_files(i)}
        )
    except NotImplementedError as e:
        raise DataError(f"data.cache_dir: {type(dataset).__name__} cannot be cached: {e}") from None
    kind = f"{type(dataset).__module__}.{type(dataset).__qualname__}"
    text = json.dumps(
        {"format": FORMAT, "type": kind, "settings": _canonical(settings), "dirs": dirs},
        sort_keys=True,
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"{split}-{type(dataset).__name__}-{digest}"


class DecodedCache(Dataset):
    """The samples of ``dataset`` read from a built cache: the same read interface (``read``,
    ``len``, indexing, ``image_file``, ``mask_file``, ``problems``...). Pickles to its index and the
    dataset's description (file lists), never pixels; the memory map is opened lazily in each
    process (DataLoader worker) on its first read."""

    def __init__(
        self, dataset: SegmentationDataset, directory: Path, index: dict[str, Any]
    ) -> None:
        self.dataset = dataset
        self.directory = directory
        self.data_file = directory / index["data"]
        self.mask_dtype = np.dtype(index["mask_dtype"])
        samples = index["samples"]
        self.names = [s["name"] for s in samples]
        # offset, channels, height, width, mask offset, float32 image (0/1): one small int64
        # array for every sample
        self.layout = np.array(
            [[s["offset"], *s["image_shape"], s["mask_offset"], _is_float(s)] for s in samples],
            dtype=np.int64,
        ).reshape(-1, 6)
        self._map: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None}

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def ignore_index(self) -> int:
        return self.dataset.ignore_index

    @property
    def problems(self) -> list[str]:
        return self.dataset.problems

    def image_file(self, index: int) -> Path | None:
        return self.dataset.image_file(index)

    def mask_file(self, index: int) -> Path | None:
        return self.dataset.mask_file(index)

    def source_files(self, index: int) -> list[Path]:
        return self.dataset.source_files(index)

    def read(self, index: int) -> tuple[Tensor, Tensor, str]:
        """``(image (C,H,W), mask (H,W), name)`` as read (and checked) when the cache was
        built: ``uint8`` images, or ``float32`` raw values of other types."""
        if self._map is None:
            self._map = np.memmap(self.data_file, dtype=np.uint8, mode="r")
        offset, c, h, w, mask_offset, is_float = (int(v) for v in self.layout[index])
        if is_float:
            image = np.array(self._map[offset : offset + 4 * c * h * w]).view(np.float32)
            image = image.reshape(c, h, w)
        else:
            image = np.array(self._map[offset : offset + c * h * w]).reshape(c, h, w)
        size = h * w * self.mask_dtype.itemsize
        mask = np.array(self._map[mask_offset : mask_offset + size]).view(self.mask_dtype)
        return torch.from_numpy(image), torch.from_numpy(mask.reshape(h, w)), self.names[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return as_sample(*self.read(index), self.ignore_index)


def _read_index(directory: Path) -> dict[str, Any] | None:
    try:
        index = json.loads((directory / "index.json").read_text())
    except (OSError, json.JSONDecodeError):  # not built yet (or unreadable: rebuilt, or an error)
        return None
    if index.get("format") != FORMAT or not (directory / index["data"]).is_file():
        return None
    return index


def _is_current(
    index: dict[str, Any] | None, dataset: SegmentationDataset, dtype: np.dtype
) -> bool:
    if index is None or len(index["samples"]) != len(dataset) or index["mask_dtype"] != dtype.name:
        return False
    return all(s["sources"] == _file_stats(dataset, i) for i, s in enumerate(index["samples"]))


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``<directory>.lock`` (works across processes and, on NFS, nodes)."""
    with open(directory.with_name(directory.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_cache(
    dataset: SegmentationDataset, cache_dir: str | Path, split: str, build: bool = True
) -> DecodedCache:
    """``dataset`` read from the split's cache, (re)built first if missing or stale
    (``build=False``: an error instead)."""
    directory = cache_dir_for(dataset, cache_dir, split)
    dtype = mask_dtype(dataset.num_classes, dataset.ignore_index)
    index = _read_index(directory)
    if _is_current(index, dataset, dtype):
        return DecodedCache(dataset, directory, index)
    if not build:
        raise DataError(f"data.cache_dir: the cache {directory} is missing or out of date")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            index = _read_index(directory)  # another process may have built it meanwhile
            if not _is_current(index, dataset, dtype):
                index = _build(dataset, directory, dtype, index)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"data.cache_dir: no space left for the decoded cache in {directory} (it needs "
                "about 4 bytes per pixel); free space or point data.cache_dir elsewhere"
            ) from None
        raise DataError(f"data.cache_dir: cannot write the cache in {cache_dir}: {e}") from None
    return DecodedCache(dataset, directory, index)


def _is_float(entry: dict[str, Any]) -> int:
    """1 for a sample whose image is stored as float32 (raw values of non-uint8 bands), else 0."""
    return int(entry.get("image_dtype", "uint8") == "float32")


def _build(
    dataset: SegmentationDataset,
    directory: Path,
    dtype: np.dtype,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """Writes a new data file (unchanged samples copied from ``previous``) and index; returns it."""
    reusable: dict[str, dict[str, Any]] = {}
    old_map = None
    if previous is not None and previous["mask_dtype"] == dtype.name:
        reusable = {json.dumps(s["sources"]): s for s in previous["samples"] if s["sources"]}
        old_map = np.memmap(directory / previous["data"], dtype=np.uint8, mode="r")
    name = f"data-{uuid.uuid4().hex[:12]}.bin"
    samples, decoded = [], 0
    offset = 0
    with open(directory / (name + ".tmp"), "wb") as out:
        for i in range(len(dataset)):
            sources = _file_stats(dataset, i)
            old = reusable.get(json.dumps(sources))
            if old is not None and old_map is not None:
                c, h, w = old["image_shape"]
                end = old["mask_offset"] + h * w * dtype.itemsize
                size = c * h * w * (4 if _is_float(old) else 1)
                image_bytes = old_map[old["offset"] : old["offset"] + size]
                image_dtype = old.get("image_dtype", "uint8")
                mask_bytes = old_map[old["mask_offset"] : end]
                sample_name = old["name"]
            else:
                image, mask, sample_name = dataset.read(i)
                c, h, w = image.shape
                image_bytes = image.contiguous().numpy().view(np.uint8)
                image_dtype = str(image.dtype).removeprefix("torch.")
                mask_bytes = mask.numpy().astype(dtype, copy=False).view(np.uint8)
                decoded += 1
            entry = {"name": sample_name, "sources": sources, "image_shape": [c, h, w]}
            entry["image_dtype"] = image_dtype
            for key, data in (("offset", image_bytes), ("mask_offset", mask_bytes)):
                entry[key] = offset
                out.write(memoryview(np.ascontiguousarray(data)).cast("B"))
                pad = -(offset + data.nbytes) % _ALIGN
                out.write(b"\0" * pad)
                offset += data.nbytes + pad
            samples.append(entry)
        if offset == 0:
            out.write(b"\0" * _ALIGN)  # an empty file cannot be memory-mapped
        out.flush()
        os.fsync(out.fileno())
    os.replace(directory / (name + ".tmp"), directory / name)
    index = {"format": FORMAT, "data": name, "mask_dtype": dtype.name, "samples": samples}
    (directory / "index.json.tmp").write_text(json.dumps(index))
    os.replace(directory / "index.json.tmp", directory / "index.json")
    for stale in directory.glob("data-*.bin*"):
        if stale.name != name:  # processes that still map an old file keep reading it (POSIX)
            stale.unlink(missing_ok=True)
    print(
        f"seglab cache: {directory}: {decoded} samples decoded, "
        f"{len(samples) - decoded} unchanged, {offset / 2**20:.1f} MiB"
    )
    return index
