"""The ``LightningDataModule`` base shared by every dataset: loaders, transforms and their settings.

Where each step of the data path happens, in one direction:

1. ``download_data()`` (a hook, no-op by default): fetch what is missing; run by ``prepare_data``
   (Lightning: once per node, before ``setup``) and before a split is first listed.
2. ``make_dataset(split)`` (each data source implements it, ``seglab.data.datasets``): the split's
   ``SegmentationDataset``, whose ``read(i)`` decodes and checks one sample (the one place).
3. ``source(split)``: that dataset, refused if it has problems, wrapped in its decoded cache with
   ``cache_dir`` (``seglab.data.cache.DecodedCache``, built in ``prepare_data``); built once per
   split and shared by training and evaluation.
4. ``train_dataset()`` / ``dataset(split)``: ``TransformedDataset(source, transform)`` with the
   training transform (``training_transform()``, ``seglab.data.transforms.TrainTransform``: scale
   and crop, centred on rare classes by weights counted before it is built; then flip, jitter,
   normalise unless ``augment_on_device``) or the evaluation transform (``normalize`` only).
5. The loaders batch them; with ``augment_on_device``, ``on_after_batch_transfer`` flips, jitters
   and normalises training batches on the device (``seglab.data.augment.BatchAugment``).
"""

from __future__ import annotations

import os
import signal
import warnings
from dataclasses import asdict, is_dataclass
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, default_collate
from torchvision import tv_tensors

from seglab.data.augment import Augment, BatchAugment
from seglab.data.cache import open_cache
from seglab.data.datasets.base import SampleSource, SegmentationDataset, TransformedDataset
from seglab.data.exif import ExifOrientation
from seglab.data.io import IMAGE_EXTENSIONS, DataError, file_problem, read_image
from seglab.data.normalize import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    are_data_statistics,
    check_input,
)
from seglab.data.sampling import RareClassSampler, RareClassSampling
from seglab.data.stats import class_pixel_counts
from seglab.data.transforms import TrainTransform, eval_transform, train_transform
from seglab.errors import ConfigError

Split = Literal["train", "val", "test"]


# Signals a job runner sends to every process of a job when it stops it (SLURM's scancel and
# pre-emption, `timeout`, Ctrl+C in a terminal) and SLURM's warning before the time limit.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name)
)


def class_names_for(num_classes: int, class_names: list[str] | None) -> list[str]:
    """The classes' names, checked against ``data.num_classes`` (the ids' strings when unnamed):
    the one check of the data modules that take both from the user."""
    if num_classes < 1:
        raise ConfigError(f"data.num_classes must be at least 1, got {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(
            f"data.class_names has {len(class_names)} names but data.num_classes is {num_classes}"
        )
    return list(class_names or [str(i) for i in range(num_classes)])


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of seglab's loaders: a data-loader worker ignores the stop signals.

    A job runner signals every process of the job at once. PyTorch's worker dies of SIGTERM, and
    the main process then reports "DataLoader worker (pid N) is killed by signal" with a traceback
    instead of stopping cleanly at the next batch. Ignoring them, the workers keep serving until
    the main process (which saves and stops, see ``seglab.callbacks.ResumeState``) shuts them
    down. Pass it to your own ``DataLoader(worker_init_fn=...)`` for the same behaviour.

    Lightning adds its worker seeding (``seed_everything(workers=True)``, which the ``seglab``
    command uses) only to loaders without a ``worker_init_fn``; it is called here instead, with the
    same seeds."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)  # the process's rank, as Lightning's own call


class SegmentationDataModule(L.LightningDataModule):
    """Base of seglab's data modules. Subclasses set ``num_classes`` and ``class_names`` in
    ``__init__``, implement ``make_dataset(split)`` and, where files can be fetched,
    ``download_data()`` (not ``prepare_data``, which also builds the decoded caches).

    Args:
        batch_size: training batch size per process.
        eval_batch_size: validation/test/predict batch size (default: ``batch_size``). Images of
            different sizes need 1.
        num_workers: data loading processes per training process.
        crop_size: training crop, an int or ``[height, width]``.
        augment: training augmentation settings (``seglab.data.augment.Augment``, checked there).
        mean, std: per-band normalisation, ``(value / 255 - mean) / std``
            (``seglab.data.normalize``: the scaling rule); ImageNet's when not given, or, when a
            checkpoint is evaluated by the seglab command, the model's. Images that are not
            3-band ``uint8`` need the data's own per-band statistics (``seglab stats``): they are
            refused without. ``in_channels`` (linked to the model) is their length.
        ignore_index: mask value that marks pixels to ignore (linked from the model by the CLI).
        pin_memory: page-locked batches for faster host-to-device copies.
        persistent_workers: keep loader processes alive between epochs.
        prefetch_factor: batches each worker prepares ahead (with ``num_workers > 0``); raise it
            when ``perf/data_wait_fraction`` shows the step waiting on uneven loading times.
        predict_dir: images to predict instead of the test split: a directory (every image in it) or
            a ``.txt`` list of image paths or stems, relative to the list's directory. No masks
            needed; any size (batch size 1).
        cache_dir: decode every sample once into a memory-mapped cache in this directory, shared by
            all workers and processes and rebuilt where source files change
            (``seglab.data.cache``; ``seglab cache --config X.yaml`` builds it ahead of time).
            Needs disk for the raw pixels.
        augment_on_device: the loader workers only decode, scale and crop training samples (uint8
            batches, a quarter of the bytes to copy); flips, colour jitter, gamma, blur and
            normalisation run on the training batch after its transfer to the device, in
            ``on_after_batch_transfer`` (``seglab.data.augment.BatchAugment``: the same code and
            parameter draws as in the workers, each sample its own parameters). For when CPU
            workers starve the accelerator. Validation, test and predict batches are normalised on
            the CPU as always.
        exif_orientation: what to do with an image whose EXIF orientation is not 1 (a photo viewers
            show turned or mirrored): ``refuse`` (stop, naming the file), ``apply`` (use the image
            as displayed: masks were drawn, and predictions are written, on the displayed image)
            or ``ignore`` (use the stored pixels). The same for every split and for predict.
        train_splits: the splits to train on, e.g. ``[train, val]`` for a final run: their samples
            one after the other, each once per epoch. Validation still runs on ``val``; when the
            training samples include it, its metrics score images the model has seen (a warning
            says so): use that for final runs with a fixed schedule, not to pick checkpoints.
            Splits that share samples (``test`` is ``val`` for VOC, Cityscapes and ADE20K) cannot
            be trained on together.
        rare_class_sampling: draw training samples, and centre their crops, to favour the classes
            that cover few training pixels (``seglab.data.sampling``, DAFormer's rule), e.g.
            ``{temperature: 0.01}``; ``null``: every sample once per epoch, uniform crops.
    """

    num_classes: int
    class_names: list[str]

    def __init__(
        self,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        crop_size: int | tuple[int, int] = 512,
        augment: Augment | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        ignore_index: int = 255,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        predict_dir: str | None = None,
        cache_dir: str | None = None,
        augment_on_device: bool = False,
        exif_orientation: ExifOrientation = "refuse",
        train_splits: tuple[Split, ...] = ("train",),
        rare_class_sampling: RareClassSampling | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        if num_workers < 0:
            raise ConfigError(
                f"data.num_workers must be 0 (no worker processes) or more, got {num_workers}"
            )
        self.num_workers = num_workers
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ConfigError(
                f"data.crop_size must be a positive int or [height, width], got {crop_size}"
            )
        self.augment = augment or Augment()
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD
        self.statistics_given = are_data_statistics(self.mean, self.std)
        self.ignore_index = ignore_index
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        if prefetch_factor < 1:
            raise ConfigError(f"data.prefetch_factor must be at least 1, got {prefetch_factor}")
        self.prefetch_factor = prefetch_factor
        self.predict_dir = predict_dir
        self.cache_dir = cache_dir
        self.augment_on_device = augment_on_device
        self.exif_orientation = exif_orientation
        self.batch_augment = BatchAugment(self.augment, self.mean, self.std)  # checks mean and std
        self.train_splits = tuple(train_splits)
        if (
            not self.train_splits
            or len(set(self.train_splits)) != len(self.train_splits)
            or any(s not in get_args(Split) for s in self.train_splits)
        ):
            raise ConfigError(
                f"data.train_splits must list distinct splits among {list(get_args(Split))}, "
                f"got {list(train_splits)}"
            )
        self.rare_class_sampling = rare_class_sampling
        self.sources: dict[Split, SampleSource] = {}  # each split's checked (cached) samples
        self.datasets: dict[str, Dataset] = {}  # evaluation sets and predict's images
        self._training: dict[Split, Dataset] = {}  # the train_splits with the training transform
        self._train_transform: TrainTransform | None = None
        self._sample_weights: Tensor | None = None  # rare-class sampling's, once computed
        self._downloaded = False
        # Lightning logs these next to the model's hyper-parameters (the W&B config, hparams.yaml)
        # and keeps them in checkpoints, with or without the seglab command: the class and every
        # argument of it and its bases, resolved where this class resolves them (augmentation,
        # normalisation), under one key that cannot clash with the model's.
        self.save_hyperparameters()
        given = dict(self.hparams)
        init_args = {}
        for key, value in given.items():
            value = getattr(self, key, value)
            init_args[key] = asdict(value) if is_dataclass(value) else value
        class_path = f"{type(self).__module__}.{type(self).__qualname__}"
        data = {"class_path": class_path, "init_args": init_args}
        self.save_hyperparameters({"data": data}, ignore=list(given))

    @property
    def in_channels(self) -> int:
        """Bands of the images, one per ``mean`` value (the seglab command gives the model
        this)."""
        return len(self.mean)

    def input_check(self) -> partial:
        """``check(image, name)``: refuses an image the normalisation does not fit
        (``seglab.data.normalize.check_input``), naming its file; picklable for the workers."""
        return partial(check_input, mean=self.mean, statistics_given=self.statistics_given)

    def statistics_dataset(self) -> Dataset:
        """What ``seglab stats`` computes per-band statistics over: the training splits' samples,
        each pixel once (``seglab.data.stats.band_statistics``)."""
        sources = [self.source(split) for split in self.train_splits]
        return sources[0] if len(sources) == 1 else ConcatDataset(sources)

    def make_dataset(self, split: Split) -> SegmentationDataset:
        """The split's dataset: what its samples are and how one is decoded (``load``)."""
        raise ConfigError(
            f"data: {type(self).__name__} has no {split} split of its own; give a data module "
            "(--config, or --data seglab.FolderDataModule --data.root DIR ...), or predict a "
            "folder with --data.predict_dir"
        )

    def download_data(self) -> None:
        """Fetches the dataset's files where they are missing (and an option asks for it); returns
        at once when they are there. Nothing by default. Runs in ``prepare_data`` (Lightning: on one
        process per node while the others wait) and, once per data module, before the first split
        is listed, so that commands without a trainer (``seglab check-data``, ``seglab cache``) get
        the files too. Override this, not ``prepare_data``."""

    def _download_once(self) -> None:
        if not self._downloaded:
            self.download_data()
            self._downloaded = True

    def source(self, split: Split) -> SampleSource:
        """One split's samples, read and checked (``SegmentationDataset.read``) and, with
        ``cache_dir``, from its decoded cache (``DecodedCache``, built here if missing or stale);
        no transform. Built once, shared by training and evaluation. A split with files that cannot
        be samples is refused, every such file named."""
        if split not in self.sources:
            self._download_once()
            dataset = self.make_dataset(split)
            if dataset.problems:  # files that cannot be samples: never skipped
                raise DataError(*dataset.problems)
            if self.cache_dir is not None:
                self.sources[split] = open_cache(dataset, self.cache_dir, split)
            else:
                self.sources[split] = dataset
        return self.sources[split]

    def training_source(self, split: Split) -> SampleSource:
        """The samples of a split that training crops from: ``source(split)`` (data modules whose
        training samples differ from the evaluation ones, like the raster module's overlapping
        regions, override it). Rare-class sampling counts these."""
        return self.source(split)

    def dataset(self, split: Split) -> Dataset:
        """One split's samples as the loaders see them, built once: ``train`` with the training
        transform, the others with the evaluation transform (what validation and test read)."""
        if split == "train":
            return self._training_split("train")
        if split not in self.datasets:
            transform = eval_transform(self.mean, self.std)
            self.datasets[split] = TransformedDataset(
                self.source(split), transform, self.input_check()
            )
        return self.datasets[split]

    def train_dataset(self) -> Dataset:
        """What the model trains on: the ``train_splits`` with the training transform, one after
        the other."""
        parts = [self._training_split(split) for split in self.train_splits]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _training_split(self, split: Split) -> Dataset:
        if split not in self._training:
            self._training[split] = TransformedDataset(
                self.training_source(split), self.training_transform(), self.input_check()
            )
        return self._training[split]

    def training_transform(self) -> TrainTransform:
        """The loaders' training transform, built once: scale and crop (with
        ``rare_class_sampling``, centred on the classes that the sampling weights, computed first,
        favour) and, unless ``augment_on_device``, flip, photometric jitter and normalisation."""
        if self._train_transform is None:
            class_weights = self._rare_class_weights() if self.rare_class_sampling else None
            self._train_transform = train_transform(
                self.crop_size,
                self.augment,
                self.ignore_index,
                self.mean,
                self.std,
                on_device=self.augment_on_device,
                class_weights=class_weights,
            )
        return self._train_transform

    def _rare_class_weights(self) -> Tensor:
        """Counts the class pixels of the training samples once (whole samples, from the decoded
        cache when there is one): the sampler's per-sample weights, kept, and the crop's class
        weights, returned."""
        sources = [self.training_source(split) for split in self.train_splits]
        counts = class_pixel_counts(
            sources[0] if len(sources) == 1 else ConcatDataset(sources),
            num_workers=self.num_workers,
        )
        class_prob, self._sample_weights, class_weights = self.rare_class_sampling.probabilities(
            counts
        )
        order = class_prob.argsort(descending=True).tolist()
        shares = ", ".join(f"{self.class_names[c]} {class_prob[c]:.3f}" for c in order[:8])
        rank_zero_info(
            f"seglab: rare-class sampling (temperature {self.rare_class_sampling.temperature})"
            f" over {len(counts)} samples; class probabilities: {shares}"
            + (", ..." if len(order) > 8 else "")
        )
        return class_weights.float()

    def prepare_data(self) -> None:
        """Lightning runs this on one process per node while the others wait: fetches missing files
        (``download_data``), then builds the decoded-sample caches of the stage's splits. Data
        modules override ``download_data``, not this."""
        self._download_once()
        if self.cache_dir is None:
            return
        fn = self.trainer.state.fn if self.trainer is not None else None
        for split in self._splits(fn.value if fn is not None else "fit"):
            self.source(split)

    def _splits(self, stage: str) -> tuple[Split, ...]:
        """The splits a stage (``fit``, ``validate``, ``test``, ``predict``) reads."""
        if stage == "predict":
            return () if self.predict_dir else ("test",)
        if stage == "fit":
            return tuple(dict.fromkeys((*self.train_splits, "val")))
        return {"validate": ("val",), "test": ("test",)}[stage]

    def setup(self, stage: str) -> None:
        if stage == "predict" and self.predict_dir and len(self.predict_dataset()) == 0:
            raise DataError(f"data.predict_dir: no images in {self.predict_dir}")
        for split in self._splits(stage):
            if len(self.source(split)) == 0:
                raise DataError(f"the {split} split of {type(self).__name__} is empty")
        if stage != "fit":
            return
        self._check_train_splits()
        samples = sum(len(self.training_source(split)) for split in self.train_splits)
        if samples < self.batch_size:
            raise DataError(
                f"the training splits ({', '.join(self.train_splits)}) have {samples} samples, "
                f"fewer than data.batch_size={self.batch_size}: no full batch to train on"
            )

    def _check_train_splits(self) -> None:
        """Refuses training splits that share samples (each would be trained on twice per epoch);
        warns when the training samples include the validation split's."""
        files = {split: _image_files(self.source(split)) for split in self._splits("fit")}
        for a, b in combinations(self.train_splits, 2):
            if shared := files[a] & files[b]:
                raise DataError(
                    f"data.train_splits: the {a} and {b} splits hold the same samples (e.g. "
                    f"{min(shared)}): each would be trained on twice per epoch; list one of them"
                )
        seen = [s for s in self.train_splits if s == "val" or files[s] & files["val"]]
        if seen:
            warnings.warn(
                f"data.train_splits {list(self.train_splits)}: the model trains on the validation "
                f"samples (of {', '.join(seen)}), so val/* metrics are optimistic; fine for a "
                "final run with a fixed schedule, not for choosing checkpoints or settings",
                UserWarning,
                stacklevel=2,
            )

    def _loader(self, split: Split, train: bool) -> DataLoader:
        dataset = self.train_dataset() if train else self.dataset(split)
        if train:
            sampler = self._rare_class_sampler(dataset) if self.rare_class_sampling else None
        else:
            sampler = self._eval_sampler(split, dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train,  # a batch of one breaks BatchNorm after global pooling (ASPP, PSP)
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            collate_fn=None if train else collate_same_size,
            worker_init_fn=ignore_stop_signals,
        )

    def _rare_class_sampler(self, dataset: Dataset) -> RareClassSampler:
        """Draws training samples by the weights counted before the training transform was built
        (``_rare_class_weights``); Lightning wraps the sampler for DDP."""
        self.training_transform()
        return RareClassSampler(self._sample_weights, len(dataset))

    def _eval_sampler(self, split: Split, dataset: Dataset) -> UnrepeatedDistributedSampler | None:
        """Each rank evaluates ``indices[rank::world_size]``: every sample exactly once.

        Lightning's default ``DistributedSampler`` pads the split with repeated samples so that all
        ranks run equally many batches, which counts those samples twice in the summed metrics.
        Uneven batch counts are safe here: evaluation runs without autograd, so DDP exchanges
        nothing per batch, and the metrics meet only once, when they are computed."""
        kwargs = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if not kwargs or kwargs["num_replicas"] == 1:
            return None
        if len(dataset) < kwargs["num_replicas"]:
            raise DataError(
                f"the {split} split has {len(dataset)} samples, fewer than the "
                f"{kwargs['num_replicas']} processes evaluating it: every process needs at least "
                "one"
            )
        return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``augment_on_device``, augments and normalises training batches on the device."""
        if self.augment_on_device and self.trainer is not None and self.trainer.training:
            batch = dict(batch)
            batch["image"], batch["mask"] = self.batch_augment.augment_any(
                batch["image"], batch["mask"]
            )
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataset(self) -> Dataset:
        """The images of ``predict_dir`` with the evaluation transform, built once."""
        if "predict" not in self.datasets:
            transform = eval_transform(self.mean, self.std)
            self.datasets["predict"] = ImageFolder(
                list_images(self.predict_dir), transform, self.exif_orientation, self.input_check()
            )
        return self.datasets["predict"]

    def predict_dataloader(self) -> DataLoader:
        if not self.predict_dir:
            return self._loader("test", train=False)
        return DataLoader(
            self.predict_dataset(),
            batch_size=1,  # images of any size
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            worker_init_fn=ignore_stop_signals,
        )


def _image_files(dataset: SampleSource) -> set[str]:
    """The image file of every sample, where the dataset has them (none for generated samples)."""
    files = (dataset.image_file(i) for i in range(len(dataset)))
    return {str(f) for f in files if f is not None}


def list_images(source: str | Path) -> list[Path]:
    """Image files of a directory (sorted; files of other types are passed over, a broken link with
    an image extension is an error) or of a ``.txt`` list (paths or stems, one a line)."""
    source = Path(source).expanduser()
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        broken = [file_problem(p, "image") for p in paths if p.is_symlink() and not p.exists()]
        if broken:
            raise DataError(*broken)
        return [p for p in paths if p.is_file()]
    if not source.is_file():
        raise DataError(f"data.predict_dir: {source} is neither a directory nor a list file")
    paths = []
    for number, line in enumerate(source.read_text().splitlines(), 1):
        if not line.strip():
            continue
        path = source.parent / line.strip()
        candidates = [path] if path.suffix.lower() in IMAGE_EXTENSIONS else []
        candidates += [path.with_name(path.name + ext) for ext in IMAGE_EXTENSIONS]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{source}:{number}: no image file for {line.strip()!r}")
        paths.append(found)
    return paths


class ImageFolder(Dataset):
    """Images without masks, for prediction: ``{"image", "name"}`` with ``name`` the file path."""

    def __init__(
        self,
        paths: list[Path],
        transform: Any = None,
        exif_orientation: ExifOrientation = "refuse",
        check: Any = None,
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.exif_orientation = exif_orientation
        self.check = check  # check(image, name), e.g. that the normalisation fits its bands

    def __len__(self) -> int:
        return len(self.paths)

    def image_file(self, index: int) -> Path:
        return self.paths[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        image: Tensor = read_image(self.paths[index], self.exif_orientation)
        if self.check is not None:
            self.check(image, str(self.paths[index]))
        if self.transform is not None:
            image = self.transform(tv_tensors.Image(image)).as_subclass(Tensor)
        return {"image": image, "name": str(self.paths[index])}


def collate_same_size(samples: list[dict]) -> dict:
    """Evaluation batches keep images at their own size, so they must all be the same size."""
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        names = ", ".join(f"{s['name']} {tuple(s['image'].shape[-2:])}" for s in samples[:4])
        raise DataError(
            f"evaluation batch mixes image sizes ({names}); set data.eval_batch_size: 1 "
            "for datasets whose images differ in size"
        )
    return default_collate(samples)
