"""Samples/s of one data-loading worker core: decode + full training augmentation.

seglab's pipeline (``FolderDataset`` + ``train_transform`` with the default ``Augment``: random scale
0.5-2, crop with padding, horizontal flip, colour jitter, gamma, blur p=0.1, normalisation) against
the albumentations pipeline users would otherwise write (``cv2.imread``; RandomScale, PadIfNeeded,
RandomCrop, HorizontalFlip, ColorJitter, RandomGamma, GaussianBlur, Normalize, ToTensorV2 with the
same parameters), and seglab reading from its decoded-sample cache (``data.cache_dir``) instead of
decoding. ``seglab_workers_on_device``: what a worker does with ``data.augment_on_device`` (decode,
scale, crop; uint8 out), the rest running on the GPU batch. All in one process with one thread (as in a DataLoader worker), repetitions interleaved,
the median reported. Images are generated photo-like (multi-scale noise, edges, sensor noise) so PNG
decoding costs what it costs on real photos.

    python bench/data_pipeline.py            # both sizes; needs `pip install seglab[bench]`
    python bench/data_pipeline.py --quick    # tiny sizes, a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seglab.data.cache import open_cache
from seglab.data.datasets.folder import FolderDataset
from seglab.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    geometric_transform,
    train_transform,
)

NUM_CLASSES = 19
IGNORE = 255


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth random field: coarse noise upsampled bilinearly (values ~[0, 1])."""
    gh, gw = h // cell + 2, w // cell + 2
    coarse = torch.from_numpy(rng.random((1, 1, gh, gw), dtype=np.float32))
    field = torch.nn.functional.interpolate(coarse, size=(gh * cell, gw * cell), mode="bilinear")
    return field[0, 0, :h, :w].numpy()


def make_sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like RGB image and a mask of regions that follow it (19 classes, 255 borders)."""
    region = sum(_noise(rng, h, w, c) * a for c, a in ((h // 4, 1.0), (h // 16, 0.5)))
    mask = np.minimum((region / region.max() * NUM_CLASSES).astype(np.uint8), NUM_CLASSES - 1)
    edge = np.zeros_like(mask, dtype=bool)
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    mask[edge] = IGNORE
    colours = rng.integers(30, 225, (NUM_CLASSES + 1, 3)).astype(np.float32)
    image = colours[np.minimum(mask, NUM_CLASSES)]
    shade = sum(_noise(rng, h, w, c) * a for c, a in ((h // 2, 60), (32, 25), (8, 12), (2, 6)))
    image = image + shade[..., None] - 50 + rng.normal(0, 4, (h, w, 3))  # lighting, texture, noise
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_dataset(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pairs = []
    for i in range(count):
        image, mask = make_sample(rng, *size)
        pair = (root / "images" / f"{i:04d}.png", root / "masks" / f"{i:04d}.png")
        Image.fromarray(image).save(pair[0])
        Image.fromarray(mask).save(pair[1])
        pairs.append(pair)
    return pairs


def seglab_pipeline(
    pairs: list, crop: tuple[int, int], cache_dir: Path | None = None, on_device: bool = False
):
    if on_device:  # the worker's share with data.augment_on_device
        transform = geometric_transform(crop, Augment(), IGNORE)
    else:
        transform = train_transform(crop, Augment(), IGNORE, IMAGENET_MEAN, IMAGENET_STD)
    dataset = FolderDataset(pairs, NUM_CLASSES, ignore_index=IGNORE, transform=transform)
    if cache_dir is not None:
        dataset.cache = open_cache(dataset, cache_dir, "train")
    return lambda i: dataset[i]


def albumentations_pipeline(pairs: list, crop: tuple[int, int], antialias: bool = False):
    """``antialias``: resize with ``cv2.INTER_AREA`` (averages the source pixels when shrinking, as
    seglab's antialiased resize does) instead of albumentations' default ``INTER_LINEAR``, which
    samples without a low-pass filter and aliases at scales below 1."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    cv2.setNumThreads(1)
    a = Augment()
    transform = A.Compose(
        [
            A.RandomScale(
                scale_limit=(a.scale_range[0] - 1, a.scale_range[1] - 1),
                interpolation=cv2.INTER_AREA if antialias else cv2.INTER_LINEAR,
                p=1.0,
            ),
            A.PadIfNeeded(
                *crop,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE,
            ),
            A.RandomCrop(*crop),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue, p=1.0),
            A.RandomGamma(gamma_limit=(a.gamma[0] * 100, a.gamma[1] * 100), p=1.0),
            A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(0.1, 1.5), p=a.blur_prob),
            A.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ToTensorV2(),
        ]
    )

    def sample(i: int) -> dict:
        image_path, mask_path = pairs[i]
        image = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        out = transform(image=image, mask=mask)
        return {"image": out["image"], "mask": out["mask"].long()}

    return sample


def measure(
    pipelines: dict[str, Callable[[int], dict]], count: int, samples: int, reps: int
) -> dict[str, float]:
    """Median samples/s of each pipeline over ``reps`` interleaved rounds of ``samples`` samples."""
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for fn in pipelines.values():  # warm-up: imports, allocator, page cache
        fn(0)
    for rep in range(reps):
        names = list(pipelines)
        names = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the order
        for name in names:
            torch.manual_seed(rep)
            start = time.perf_counter()
            for k in range(samples):
                out = pipelines[name](k % count)
            rates[name].append(samples / (time.perf_counter() - start))
            assert out["image"].dtype in (torch.float32, torch.uint8)
            assert out["mask"].dtype == torch.long
    return {name: statistics.median(r) for name, r in rates.items()}


def run_case(
    name: str, size: tuple[int, int], crop: tuple[int, int], count: int, args
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        pairs = write_dataset(Path(tmp) / "data", count, size)
        pipelines = {"seglab": seglab_pipeline(pairs, crop)}
        if args.cache:
            pipelines["seglab_cached"] = seglab_pipeline(pairs, crop, Path(tmp) / "cache")
        pipelines["seglab_workers_on_device"] = seglab_pipeline(pairs, crop, on_device=True)
        if args.albumentations:
            pipelines["albumentations"] = albumentations_pipeline(pairs, crop)
            pipelines["albumentations_antialias"] = albumentations_pipeline(pairs, crop, True)
        rates = measure(pipelines, count, args.samples or count, args.reps)
    h, w = size
    for pipeline, rate in rates.items():
        print(f"{name}_{h}x{w}_crop{crop[0]}x{crop[1]}_{pipeline}: {rate:.1f} samples/s")
    if "albumentations" in rates:
        for variant in ("albumentations", "albumentations_antialias"):
            ratio = rates["seglab"] / rates[variant]
            print(f"{name} ratio seglab/{variant}: {ratio:.2f} x")
    if "seglab_cached" in rates:
        print(f"{name} ratio cached/decode: {rates['seglab_cached'] / rates['seglab']:.2f} x")
    print(
        f"{name} ratio workers_on_device/full: "
        f"{rates['seglab_workers_on_device'] / rates['seglab']:.2f} x"
    )
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny images, one repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--samples", type=int, default=0, help="samples per repetition")
    parser.add_argument("--cases", nargs="+", default=["small", "large"])
    parser.add_argument("--no-albumentations", dest="albumentations", action="store_false")
    parser.add_argument("--no-cache", dest="cache", action="store_false")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker = one core
    if args.albumentations:
        try:
            import albumentations  # noqa: F401
        except ImportError:
            print("albumentations not installed (pip install 'seglab[bench]'): skipping it")
            args.albumentations = False
    cases = {
        "small": ((360, 480), (256, 256), 12),
        "large": ((1024, 2048), (512, 1024), 6),
    }
    if args.quick:
        cases = {"small": ((72, 96), (48, 48), 3), "large": ((128, 256), (64, 128), 2)}
        args.reps = 1
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.cases:
        size, crop, count = cases[name]
        run_case(name, size, crop, count, args)


if __name__ == "__main__":
    main()
