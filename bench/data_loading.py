"""The data path as training sees it: loader throughput with N workers, CPU augmentation against
``augment_on_device``, and the data-wait fraction of a real training run.

    python bench/data_loading.py [--device cuda] [--workers 8 16] [--train_workers 8]
                                 [--size 1024 2048] [--crop 512 1024] [--batch 8] [--steps 30]

Photo-like PNGs (``data_pipeline.write_dataset``: decoding costs what it costs on real photos) are
generated under a temporary directory in the ``FolderDataModule`` layout; a few distinct samples
are hard-linked to as many files as one epoch of ``--steps`` batches reads. Every number comes from
a real ``Trainer.fit`` with seglab's ``Throughput`` callback (the mean over its windows but the
first, which holds the start-up):

- ``loader_*``: a 2.3 M-parameter network (timm ``test_resnet``) whose step costs next to nothing,
  so its ``perf/images_per_sec`` is the rate at which the loader workers decode, scale and crop
  and, on the CPU or (``on_device``) on the training batch after its transfer, flip, jitter the
  colours, apply gamma and blur and normalise;
- ``train_*``: UNet-ResNet34 (bf16-mixed and channels-last on CUDA) and its
  ``perf/data_wait_fraction``, the share of training time spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
from pathlib import Path

import lightning as L
import torch
from data_pipeline import NUM_CLASSES, write_dataset
from lightning.pytorch.loggers import CSVLogger

from seglab import FolderDataModule, SegmentationModule, Throughput
from seglab.callbacks import ChannelsLast


def make_dataset(root: Path, files: int, size: tuple[int, int], unique: int) -> Path:
    """``root/{train,val}/{images,masks}``: ``unique`` generated samples linked to ``files`` train
    names (and one val sample, which the data module requires)."""
    samples = write_dataset(root / "unique", unique, size)
    for split, count in (("train", files), ("val", 1)):
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        for i in range(count):
            image, mask = samples[i % unique]
            os.link(image, root / split / "images" / f"{i:05d}.png")
            os.link(mask, root / split / "masks" / f"{i:05d}.png")
    return root


def fit_throughput(
    args: argparse.Namespace, root: Path, encoder: str, workers: int, on_device: bool
) -> dict[str, float]:
    """Mean ``perf/*`` values over the ``Throughput`` windows of a ``--steps`` step fit, the
    first window left out."""
    cuda = args.device == "cuda"
    data = FolderDataModule(
        str(root),
        NUM_CLASSES,
        crop_size=tuple(args.crop),
        batch_size=args.batch,
        num_workers=workers,
        augment_on_device=on_device,
    )
    torch.manual_seed(0)
    model = SegmentationModule(encoder_name=encoder, num_classes=NUM_CLASSES)
    with tempfile.TemporaryDirectory() as logs:
        logger = CSVLogger(logs)
        trainer = L.Trainer(
            accelerator=args.device,
            devices=1,
            precision="bf16-mixed" if cuda else "32-true",
            max_steps=args.steps,
            limit_val_batches=0,
            logger=logger,
            callbacks=[Throughput(window=args.window), *([ChannelsLast()] if cuda else [])],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, data)
        with open(Path(logger.log_dir) / "metrics.csv") as f:
            rows = [row for row in csv.DictReader(f) if row.get("perf/images_per_sec")]
    rows = rows[1:] or rows  # the first window holds the start-up: CUDA, allocator, cuDNN
    keys = ("perf/images_per_sec", "perf/data_wait_fraction")
    return {key: statistics.mean(float(row[key]) for row in rows) for key in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 16], help="loader runs")
    parser.add_argument("--train_workers", type=int, default=8, help="workers of the train runs")
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 2048], help="image h w")
    parser.add_argument("--crop", type=int, nargs=2, default=[512, 1024], help="crop h w")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="steps per run (one epoch)")
    parser.add_argument("--window", type=int, default=10, help="Throughput window in steps")
    parser.add_argument("--unique", type=int, default=8, help="distinct generated samples")
    parser.add_argument("--train_encoder", default="resnet34")
    args = parser.parse_args(argv)
    h, w = args.size
    print(f"config: {h}x{w} PNGs, {args.crop[0]}x{args.crop[1]} crops, batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp), args.batch * args.steps, (h, w), args.unique)
        for workers in args.workers:
            rates = {}
            for on_device in (False, True):
                where = "on_device" if on_device else "cpu_augment"
                perf = fit_throughput(args, root, "tu-test_resnet", workers, on_device)
                rates[where] = perf["perf/images_per_sec"]
                print(f"loader_w{workers}_{where}: {rates[where]:.1f} images/s")
            ratio = rates["on_device"] / rates["cpu_augment"]
            print(f"loader_w{workers} ratio on_device/cpu_augment: {ratio:.2f} x")
        for on_device in (False, True):
            where = "on_device" if on_device else "cpu_augment"
            perf = fit_throughput(args, root, args.train_encoder, args.train_workers, on_device)
            name = f"train_{args.train_encoder}_w{args.train_workers}_{where}"
            print(f"{name}: {perf['perf/images_per_sec']:.1f} images/s")
            print(f"{name} data_wait_fraction: {perf['perf/data_wait_fraction']:.3f}")


if __name__ == "__main__":
    main()
