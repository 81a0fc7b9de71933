"""Datasets that do not fit on one machine: LitData's optimized shards, written once, streamed
by every process of every node.

``seglab optimize --config X.yaml --output_dir DIR_OR_URL`` (``optimize_split`` here) reads each
split of any seglab data module through ``SegmentationDataset.read`` (decode and check: a bad sample
stops the write, naming its file) and writes it with ``litdata.optimize``::

    DIR_OR_URL/train/index.json, chunk-*.bin    one sample per item: image (C,H,W) as read, mask
    DIR_OR_URL/train/seglab.json                (H,W) in the narrowest integer type, the name
    DIR_OR_URL/val/...                          the split's classes, palette, normalisation,
                                                ignore_index and sample count

Pixels are stored as raw arrays: images and masks come back bit-identical. ``DIR_OR_URL`` is a
local directory or an object-store URL LitData writes to (``s3://``, ``gs://``...; credentials and
endpoint from the usual environment, e.g. ``AWS_ENDPOINT_URL``, or ``storage_options``).

``StreamingDataModule(input_dir=DIR_OR_URL)`` trains on them: ``litdata.StreamingDataset`` with
``StreamingDataLoader`` for training (LitData shards the chunks by node, rank and worker, shuffles
chunks and samples within chunks every epoch, and its loader's state goes into Lightning's
checkpoints, so a resumed epoch continues where it stopped), seglab's training transform on every
sample. Validation and test read the shards by index, each process ``indices[rank::world_size]``
(the base data module's unpadded sampler): every sample is counted exactly once.

Which samples an epoch trains on: LitData gives every process the same number of full batches,
``floor(floor(N / batch_size) / world_size)``, from a permutation of the chunks that depends on the
epoch and ``shuffle_seed`` only, so the processes of all nodes train on disjoint samples; the
fewer than ``world_size * batch_size`` samples left over are not trained on in that epoch (another
epoch's permutation leaves over others). An epoch resumed from a checkpoint written during it
trains on exactly the samples the interrupted epoch had not reached yet, when the number of
processes, loader workers and the batch size are those of the interrupted run (otherwise LitData
restripes the rest of the epoch over the new layout).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from seglab.compat import litdata_filesystem
from seglab.data.cache import mask_dtype
from seglab.data.datamodule import SegmentationDataModule, Split
from seglab.data.datasets.base import SampleSource, SegmentationDataset, as_sample
from seglab.errors import ConfigError, DataError

if TYPE_CHECKING:
    from litdata import StreamingDataLoader, StreamingDataset

METADATA = "seglab.json"
FORMAT = 1
_REMOTE = ("s3://", "gs://", "r2://")  # the object stores LitData writes and reads
# LitData mmaps local chunks "in place" with a whole-chunk-per-worker shuffle that trims every
# worker to the shortest one and can leave a process without samples; the documented switch turns
# it off, so local and object-store datasets share one split of the samples (see module docstring).
_POSIX_FAST = "LITDATA_POSIX_FAST"


def _litdata() -> Any:
    """LitData, an optional dependency (``pip install 'seglab[stream]'``)."""
    try:
        import litdata
    except ImportError:
        raise ConfigError(
            "streamed datasets need LitData: pip install 'seglab[stream]' (or litdata)"
        ) from None
    return litdata


def is_remote(path: str) -> bool:
    """Whether ``path`` is an object-store URL rather than a local directory."""
    return str(path).startswith(_REMOTE)


def split_dir(root: str, split: str) -> str:
    """The directory (or URL) of one split's shards under ``root``."""
    return f"{str(root).rstrip('/')}/{split}"


# --- writing ------------------------------------------------------------------------------------
class _WriteSample:
    """``litdata.optimize``'s function: sample ``index`` read and checked (``read``), as arrays.
    A ``DataError`` is also written to ``error_file``: LitData passes on only the worker's
    traceback as text, and the command reports the message itself."""

    def __init__(self, dataset: SegmentationDataset, dtype: str, error_file: str) -> None:
        self.dataset = dataset
        self.dtype = np.dtype(dtype)
        self.error_file = error_file

    def __call__(self, index: int) -> dict[str, Any]:
        try:
            image, mask, name = self.dataset.read(index)
        except DataError as e:
            Path(self.error_file).write_text(str(e))
            raise
        return {
            "index": index,
            # As bytes: LitData stores a string that names an existing file as that file's content.
            "name": np.frombuffer(str(name).encode(), dtype=np.uint8),
            "image": np.ascontiguousarray(image.numpy()),
            "mask": np.ascontiguousarray(mask.numpy().astype(self.dtype, copy=False)),
        }


@dataclass
class WrittenSplit:
    """What ``optimize_split`` wrote: where, how many samples and chunks, how many bytes."""

    split: str
    output_dir: str
    samples: int
    chunks: int
    bytes: int
    seconds: float


def data_metadata(data: SegmentationDataModule, split: str, samples: int) -> dict[str, Any]:
    """The ``seglab.json`` of a split: what a model trained on the shards must know."""
    palette = getattr(data, "palette", None)
    return {
        "format": FORMAT,
        "split": split,
        "samples": samples,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "ignore_index": data.ignore_index,
        "mean": list(data.mean),
        "std": list(data.std),
        "palette": None if palette is None else [list(c) for c in palette],
        "mask_dtype": mask_dtype(data.num_classes, data.ignore_index).name,
        "data_module": f"{type(data).__module__}.{type(data).__qualname__}",
    }


def optimize_split(
    data: SegmentationDataModule,
    split: Split,
    output_dir: str,
    num_workers: int = 2,
    chunk_bytes: str = "64MB",
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> WrittenSplit:
    """Writes one split of ``data`` to ``output_dir/<split>`` in LitData's format, every sample read
    and checked as training reads it, with ``seglab.json`` beside the shards. LitData's progress
    bar shows the samples written."""
    dataset = data.make_dataset(split)  # the files themselves: no decoded cache, no transform
    if dataset.problems:
        raise DataError(*dataset.problems)
    if len(dataset) == 0:
        raise DataError(f"the {split} split of {type(data).__name__} is empty")
    target = split_dir(output_dir, split)
    local = not is_remote(target)
    if local and not overwrite and Path(target).is_dir() and any(Path(target).iterdir()):
        raise ConfigError(
            f"--output_dir: {target} is not empty; give another directory or --overwrite true"
        )
    dtype = mask_dtype(data.num_classes, data.ignore_index).name
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seglab-optimize-") as tmp:
        error_file = os.path.join(tmp, "error.txt")
        write = _WriteSample(dataset, dtype, error_file)
        methods = multiprocessing.get_all_start_methods()
        try:
            _litdata().optimize(
                fn=write,
                inputs=list(range(len(dataset))),
                output_dir=target,
                num_workers=max(1, min(num_workers, len(dataset))),
                chunk_bytes=chunk_bytes,
                mode="overwrite" if overwrite else None,
                start_method="fork" if "fork" in methods else None,
                storage_options=dict(storage_options or {}),
                verbose=True,
            )
        except RuntimeError:
            if os.path.exists(error_file):  # a bad sample: its message, naming the file
                raise DataError(Path(error_file).read_text()) from None
            raise
    index = _read_json(target, "index.json", storage_options)
    chunks = index.get("chunks", [])
    written = WrittenSplit(
        split=split,
        output_dir=target,
        samples=sum(int(c["chunk_size"]) for c in chunks),
        chunks=len(chunks),
        bytes=sum(int(c["chunk_bytes"]) for c in chunks),
        seconds=time.perf_counter() - start,
    )
    # LitData reports a failed upload of a chunk and goes on: every chunk must be there.
    missing = [c["filename"] for c in chunks if not _exists(target, c["filename"], storage_options)]
    if missing:
        raise DataError(
            f"{target}: {len(missing)} of {len(chunks)} chunks were not written (e.g. "
            f"{missing[0]}; LitData's log above says why); write the split again with "
            "--overwrite true"
        )
    if written.samples != len(dataset):
        raise DataError(
            f"{target}: LitData wrote {written.samples} samples of the {split} split's "
            f"{len(dataset)}; write it again with --overwrite true"
        )
    _write_json(target, METADATA, data_metadata(data, split, written.samples), storage_options)
    return written


# --- metadata on a local disk or an object store -------------------------------------------------
def _write_json(
    directory: str, name: str, content: dict[str, Any], storage_options: dict | None
) -> None:
    text = json.dumps(content, indent=1)
    if not is_remote(directory):
        Path(directory, name).write_text(text)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        Path(local).write_text(text)
        litdata_filesystem(directory, storage_options).upload_file(local, f"{directory}/{name}")


def _exists(directory: str, name: str, storage_options: dict | None) -> bool:
    if not is_remote(directory):
        return Path(directory, name).is_file()
    return litdata_filesystem(directory, storage_options).exists(f"{directory}/{name}")


def _read_json(directory: str, name: str, storage_options: dict | None) -> dict[str, Any]:
    if not is_remote(directory):
        return json.loads(Path(directory, name).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        litdata_filesystem(directory, storage_options).download_file(f"{directory}/{name}", local)
        return json.loads(Path(local).read_text())


def read_metadata(
    input_dir: str, split: str, storage_options: dict | None = None
) -> dict[str, Any]:
    """A split's ``seglab.json``, or an error naming where it should be and how to write it."""
    where = split_dir(input_dir, split)
    try:
        metadata = _read_json(where, METADATA, storage_options)
    except (OSError, ValueError, RuntimeError) as e:
        if is_remote(where) or not Path(where).exists():
            raise DataError(
                f"{where}/{METADATA}: not found ({type(e).__name__}); write the {split} split "
                "with `seglab optimize --config X.yaml --output_dir DIR_OR_URL`"
            ) from None
        raise DataError(f"{where}/{METADATA}: unreadable: {e}") from None
    except Exception as e:  # boto3/google errors are no subclass of the above
        raise DataError(f"{where}/{METADATA}: cannot be read: {e}") from None
    if metadata.get("format") != FORMAT:
        raise DataError(
            f"{where}/{METADATA}: format {metadata.get('format')!r}, this seglab reads {FORMAT}; "
            "write the shards again with this version's `seglab optimize`"
        )
    return metadata


# --- reading ------------------------------------------------------------------------------------
@contextmanager
def _litdata_posix_fast_off() -> Iterator[None]:
    previous = os.environ.get(_POSIX_FAST)
    os.environ[_POSIX_FAST] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_POSIX_FAST, None)
        else:
            os.environ[_POSIX_FAST] = previous


def streaming_dataset(input_dir: str, by_index: bool = False, **kwargs: Any) -> StreamingDataset:
    """``litdata.StreamingDataset`` over one split's shards. Iterated (training), the same on local
    disk and on object stores: LitData's in-place mode for local disks, which splits the samples
    its own way, is off. Read by index (``by_index``: evaluation), local chunks are memory-mapped
    in place (LitData's in-place mode; without it, it reads a whole chunk file for every sample)
    and remote samples are fetched by byte range."""
    if by_index:
        return _litdata().StreamingDataset(input_dir, shuffle=False, **kwargs)
    with _litdata_posix_fast_off():
        return _litdata().StreamingDataset(input_dir, **kwargs)


def _arrays(item: dict[str, Any]) -> tuple[Tensor, Tensor, str]:
    name = bytes(np.asarray(item["name"], dtype=np.uint8)).decode()
    return torch.as_tensor(item["image"]), torch.as_tensor(item["mask"]), name


class _TrainingSample:
    """``StreamingDataset``'s transform: a streamed item through seglab's training transform."""

    def __init__(self, transform: Any, ignore_index: int) -> None:
        self.transform = transform
        self.ignore_index = ignore_index

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        return as_sample(*_arrays(item), self.ignore_index, self.transform)


class StreamedSplit(Dataset):
    """One split's shards read by index (``SampleSource``: what evaluation, class statistics and
    ``seglab.data.stats`` read): ``read(i)`` is the sample as written, checked when it was."""

    def __init__(
        self,
        input_dir: str,
        metadata: dict[str, Any],
        storage_options: dict | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.input_dir = input_dir
        self.num_classes = int(metadata["num_classes"])
        self.ignore_index = int(metadata["ignore_index"])
        self.problems: list[str] = []
        self.samples = int(metadata["samples"])
        self.dataset = streaming_dataset(
            input_dir, by_index=True, storage_options=storage_options, cache_dir=cache_dir
        )

    def __len__(self) -> int:
        return self.samples

    def read(self, index: int) -> tuple[Tensor, Tensor, str]:
        return _arrays(self.dataset[int(index)])

    def image_file(self, index: int) -> Path | None:
        return None

    def mask_file(self, index: int) -> Path | None:
        return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        return as_sample(*self.read(index), self.ignore_index)


class StreamingDataModule(SegmentationDataModule):
    """Any seglab dataset written by ``seglab optimize``, streamed from a local directory or an
    object store (``s3://bucket/prefix``...) by every process of every node (see
    ``seglab.data.streaming``; docs/guides/streaming.md has the multi-node recipe).

    The classes, ``ignore_index``, palette and normalisation are those ``seglab.json`` recorded
    when the shards were written (``num_classes`` and ``class_names`` are linked to the model as
    for any data module; ``mean``/``std`` given here replace the recorded ones).

    Args:
        input_dir: the ``--output_dir`` of ``seglab optimize``: a directory or URL holding
            ``train/`` and ``val/`` (and ``test/`` when written).
        storage_options: passed to LitData's object-store client (for S3, ``boto3.client``'s
            arguments, e.g. ``{endpoint_url: http://minio:9000}``); credentials and
            ``AWS_ENDPOINT_URL`` are also read from the environment as boto3 reads them.
        chunk_cache_dir: where downloaded chunks are kept on each node (LitData's default
            otherwise); local directories are read in place.
        max_cache_size: LitData's budget for that cache, e.g. ``"50GB"``.
        shuffle_seed: LitData's shuffle seed: the same on every process (the chunk permutation of
            each epoch depends on it and the epoch only), recorded in the loader's resume state.
        **kwargs: the shared data settings of ``SegmentationDataModule`` (batch size, workers,
            crop, augmentation, ``augment_on_device``...). ``rare_class_sampling`` is refused:
            LitData streams every sample once per epoch in its chunk order and cannot draw samples
            by weight. ``cache_dir`` and ``train_splits`` do not apply (the shards are the cache;
            ``train/`` is trained on).
    """

    def __init__(
        self,
        input_dir: str,
        storage_options: dict[str, Any] | None = None,
        chunk_cache_dir: str | None = None,
        max_cache_size: str | None = None,
        shuffle_seed: int = 42,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("rare_class_sampling") is not None:
            raise ConfigError(
                "data.rare_class_sampling: StreamingDataModule cannot sample by class: LitData "
                "streams every sample once per epoch in its chunk order and has no weighted "
                "sampling; set it to null, or train from the files (e.g. FolderDataModule)"
            )
        if kwargs.get("cache_dir") is not None or tuple(kwargs.get("train_splits", ["train"])) != (
            "train",
        ):
            raise ConfigError(
                "data.cache_dir and data.train_splits do not apply to StreamingDataModule (the "
                "optimized shards are read as they are, train/ is trained on); leave them unset"
            )
        self.input_dir = str(input_dir).rstrip("/")
        if not is_remote(self.input_dir):
            self.input_dir = str(Path(self.input_dir).expanduser().resolve())
            if not Path(self.input_dir).is_dir():
                raise ConfigError(
                    f"data.input_dir: {self.input_dir} is not a directory; write it with "
                    "`seglab optimize --config X.yaml --output_dir DIR`"
                )
        self.storage_options = dict(storage_options or {})
        self.metadata = read_metadata(self.input_dir, "train", self.storage_options)
        recorded = self.metadata
        for key in ("mean", "std"):
            if kwargs.get(key) is None:
                kwargs[key] = tuple(recorded[key])
        ignore_index = kwargs.get("ignore_index", recorded["ignore_index"])
        if ignore_index != recorded["ignore_index"]:
            raise ConfigError(
                f"model.ignore_index is {ignore_index} but the shards in {self.input_dir} mark "
                f"ignored pixels with {recorded['ignore_index']}: set model.ignore_index "
                f"{recorded['ignore_index']}"
            )
        kwargs["ignore_index"] = recorded["ignore_index"]
        super().__init__(**kwargs)
        self.num_classes = int(recorded["num_classes"])
        self.class_names = list(recorded["class_names"])
        self.palette = (
            None if recorded["palette"] is None else [tuple(c) for c in recorded["palette"]]
        )
        self.chunk_cache_dir = chunk_cache_dir
        self.max_cache_size = max_cache_size
        self.shuffle_seed = shuffle_seed
        self._streamed_train: StreamingDataset | None = None
        self._train_loader: StreamingDataLoader | None = None
        self._resume_position: dict[str, Any] | None = None

    # --- the splits ------------------------------------------------------------------------------
    def split_metadata(self, split: Split) -> dict[str, Any]:
        """A split's ``seglab.json``, checked against the training split's classes."""
        if split == "train":
            return self.metadata
        metadata = read_metadata(self.input_dir, split, self.storage_options)
        for key in ("num_classes", "class_names", "ignore_index", "mask_dtype"):
            if metadata[key] != self.metadata[key]:
                raise DataError(
                    f"{split_dir(self.input_dir, split)}/{METADATA}: {key} {metadata[key]!r} "
                    f"differs from the train split's {self.metadata[key]!r}; write both splits "
                    "with one `seglab optimize` run"
                )
        return metadata

    def source(self, split: Split) -> SampleSource:
        """One split's shards read by index (evaluation, class statistics)."""
        if split not in self.sources:
            self.sources[split] = StreamedSplit(
                split_dir(self.input_dir, split),
                self.split_metadata(split),
                self.storage_options,
                self.chunk_cache_dir,
            )
        return self.sources[split]

    def make_dataset(self, split: Split) -> SegmentationDataset:
        raise ConfigError(
            f"data: StreamingDataModule streams shards written by `seglab optimize`; it has no "
            f"files to read the {split} split from (run the command on the original data module)"
        )

    def streamed_train_dataset(self) -> StreamingDataset:
        """The training split as LitData streams it, through seglab's training transform."""
        if self._streamed_train is None:
            options = {"max_cache_size": self.max_cache_size} if self.max_cache_size else {}
            self._streamed_train = streaming_dataset(
                split_dir(self.input_dir, "train"),
                shuffle=True,
                drop_last=True,  # every process the same number of full batches
                seed=self.shuffle_seed,
                storage_options=self.storage_options,
                cache_dir=self.chunk_cache_dir,
                transform=_TrainingSample(self.training_transform(), self.ignore_index),
                **options,
            )
        return self._streamed_train

    # --- Lightning hooks -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Nothing to fetch or cache: LitData downloads chunks as they are read."""

    def setup(self, stage: str) -> None:
        for split in self._splits(stage):
            if len(self.source(split)) == 0:
                raise DataError(f"{split_dir(self.input_dir, split)}: no samples")
        if stage == "fit" and len(self.source("train")) < self.batch_size:
            raise DataError(
                f"{split_dir(self.input_dir, 'train')} has {len(self.source('train'))} samples, "
                f"fewer than data.batch_size={self.batch_size}: no full batch to train on"
            )

    def train_dataloader(self) -> StreamingDataLoader:
        """LitData's loader: its rank/node/worker sharding and its resume position (see
        ``state_dict``). Its workers are started afresh every epoch: they take the epoch and the
        resume position from the main process when the epoch starts."""
        loader = _litdata().StreamingDataLoader(
            self.streamed_train_dataset(),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            collate_fn=default_collate,
        )
        if self._resume_position is not None:
            loader.load_state_dict(self._resume_position)
            self._resume_position = None
        # What Lightning saves of the loader (fit_loop's "combined_loader", which it restores
        # only when it builds the loader after the checkpoint is read) is the same position.
        loader.state_dict = self.loader_position
        self._train_loader = loader
        return loader

    def trained_batches(self) -> int | None:
        """The training batches of the current epoch that have made their step (Lightning's batch
        progress), or None outside a fit."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return None
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def loader_position(self) -> dict[str, Any]:
        """The training loader's resume state (``StreamingDataLoader.state_dict``'s form) at the
        batches of the epoch that have been trained on. Not LitData's own count of the batches its
        loader handed out: Lightning fetches one batch ahead, which a resume from that count would
        skip."""
        loader = self._train_loader
        assert loader is not None
        trained = self.trained_batches()
        if trained is None:
            return type(loader).state_dict(loader)
        workers = max(self.num_workers, 1)
        samples = trained * self.batch_size
        return {
            "dataset": loader.dataset.state_dict(samples, self.num_workers, self.batch_size),
            "current_epoch": loader.current_epoch,
            "num_samples_yielded": samples,
            "latest_worker_idx": (trained - 1) % workers,  # LitData's workers take turns
        }

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position (``loader_position``), in every checkpoint."""
        if self._train_loader is None or self.trained_batches() is None:
            return {}
        return {"train_loader": self.loader_position()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keeps the position for the next training loader (Lightning restores the data module
        before it asks for the loaders)."""
        self._resume_position = state_dict.get("train_loader")


__all__ = [
    "METADATA",
    "StreamedSplit",
    "StreamingDataModule",
    "WrittenSplit",
    "data_metadata",
    "optimize_split",
    "read_metadata",
    "streaming_dataset",
]
