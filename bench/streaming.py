"""Training samples per second from LitData shards on local disk (``StreamingDataModule``) against
reading the same dataset's files (``FolderDataModule``) and its decoded cache (``cache_dir``), in
one run.

    python bench/streaming.py [--samples 64] [--size 512 1024] [--crop 256 512] [--batch 4]
                              [--workers 0 2] [--epochs 2]

Photo-like PNG pairs (``data_pipeline.write_dataset``) are generated in the ``FolderDataModule``
layout under a temporary directory; the decoded cache is built and the shards are written
(``seglab optimize``'s ``optimize_split``) before anything is timed. For each source and number of
loader workers, ``read_*`` is one process reading every raw sample (``source(split).read``: PNG
decoding, cache copies, shard reads), and ``loader_*`` is the training loader of the data module
(training transform: scale, crop, flip, jitter, normalise) over ``--epochs`` epochs, the best
epoch's samples/s reported. Ratios are against the files.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from data_pipeline import NUM_CLASSES, write_dataset

from seglab import FolderDataModule, StreamingDataModule
from seglab.data.streaming import optimize_split


def make_dataset(root: Path, samples: int, size: tuple[int, int]) -> Path:
    """``root/{train,val}/{images,masks}``: ``samples`` distinct training pairs, 2 validation."""
    for split, count in (("train", samples), ("val", 2)):
        pairs = write_dataset(root / "generated" / split, count, size, seed=len(split))
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        for i, (image, mask) in enumerate(pairs):
            os.link(image, root / split / "images" / f"{i:05d}.png")
            os.link(mask, root / split / "masks" / f"{i:05d}.png")
    return root


def read_rate(data: object) -> float:
    source = data.source("train")
    start = time.perf_counter()
    for i in range(len(source)):
        source.read(i)
    return len(source) / (time.perf_counter() - start)


def loader_rate(data: object, epochs: int) -> float:
    best = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for batch in data.train_dataloader():
            seen += len(batch["image"])
        best = max(best, seen / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 1024], help="image h w")
    parser.add_argument("--crop", type=int, nargs=2, default=[256, 512], help="crop h w")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    h, w = args.size
    print(f"config: {args.samples} {h}x{w} PNG pairs, {args.crop[0]}x{args.crop[1]} crops, "
          f"batch {args.batch}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "data", args.samples, (h, w))
        common = {"crop_size": tuple(args.crop), "batch_size": args.batch}
        files = FolderDataModule(str(root), NUM_CLASSES, **common)
        cached = FolderDataModule(str(root), NUM_CLASSES, cache_dir=f"{tmp}/cache", **common)
        cached.source("train")  # built before timing
        written = optimize_split(files, "train", f"{tmp}/shards", num_workers=2)
        optimize_split(files, "val", f"{tmp}/shards", num_workers=2)
        print(f"shards: {written.bytes / 2**20:.1f} MiB in {written.chunks} chunks (train)")
        sources = {
            "files": lambda workers: FolderDataModule(
                str(root), NUM_CLASSES, num_workers=workers, **common
            ),
            "cache": lambda workers: FolderDataModule(
                str(root), NUM_CLASSES, num_workers=workers, cache_dir=f"{tmp}/cache", **common
            ),
            "shards": lambda workers: StreamingDataModule(
                f"{tmp}/shards", num_workers=workers, **common
            ),
        }
        reads = {name: read_rate(make(0)) for name, make in sources.items()}
        for name, rate in reads.items():
            print(f"read_{name}: {rate:.1f} samples/s")
        for name in ("cache", "shards"):
            print(f"read ratio {name}/files: {reads[name] / reads['files']:.2f} x")
        for workers in args.workers:
            rates = {n: loader_rate(make(workers), args.epochs) for n, make in sources.items()}
            for name, rate in rates.items():
                print(f"loader_w{workers}_{name}: {rate:.1f} samples/s")
            for name in ("cache", "shards"):
                ratio = rates[name] / rates["files"]
                print(f"loader_w{workers} ratio {name}/files: {ratio:.2f} x")


if __name__ == "__main__":
    main()
