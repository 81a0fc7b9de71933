"""Samples/s of one data-loading worker core: decode + full training augmentation.

seglab's pipeline (``FolderDataset`` read through a ``TransformedDataset`` with ``train_transform``
and the default ``Augment``: random scale 0.5-2, crop with padding, horizontal flip, colour jitter,
gamma, blur p=0.1, normalisation) against the albumentations pipeline users would otherwise write
(``cv2.imread``; RandomScale, PadIfNeeded, RandomCrop, HorizontalFlip, ColorJitter, RandomGamma,
GaussianBlur, Normalize, ToTensorV2 with the same parameters), and seglab reading from its
decoded-sample cache (``data.cache_dir``) instead of decoding. ``seglab_workers_on_device``: what a
worker does with ``data.augment_on_device`` (decode, scale, crop; uint8 out); ``device_batch``: the
rest of that path, ``BatchAugment`` on a collated batch of those crops, measured here on the CPU.
All in one process with one thread (as in a DataLoader worker), repetitions interleaved, the median
reported; rates are samples per second of CPU time (``time.process_time``), which other jobs on a
shared machine disturb less than wall time. Images are generated photo-like (multi-scale noise,
edges, sensor noise) so PNG decoding costs what it costs on real photos.

    python bench/data_pipeline.py            # both sizes; needs `pip install seglab[bench]`
    python bench/data_pipeline.py --quick    # tiny sizes, a smoke test
    python bench/data_pipeline.py --baseline /tmp/seglab-before   # before/after, see below

``--baseline PATH`` measures the seglab checkout at ``PATH`` (e.g. ``git worktree add
/tmp/seglab-before main``) in the same process, its pipelines interleaved with this one's
(``before_*``), and prints the after/before ratios. The checkout's package is imported as
``seglab_baseline`` from a copy whose ``seglab`` imports are renamed; it needs ``train_transform``
and ``BatchAugment`` (older checkouts name the workers' transform ``geometric_transform``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from seglab.data.augment import Augment
from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 19
IGNORE = 255
CASES = {  # image size, crop size, number of files
    "small": ((360, 480), (256, 256), 12),
    "large": ((1024, 2048), (512, 1024), 6),
}
QUICK_CASES = {"small": ((72, 96), (48, 48), 3), "large": ((128, 256), (64, 128), 2)}
BATCH = 8  # the device_batch measurement's batch size


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
    """``count`` generated PNG pairs under ``root`` (kept if already there)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    pairs = []
    for i in range(count):
        pair = (root / "images" / f"{i:04d}.png", root / "masks" / f"{i:04d}.png")
        if not (pair[0].is_file() and pair[1].is_file()):
            image, mask = make_sample(rng, *size)
            Image.fromarray(image).save(pair[0])
            Image.fromarray(mask).save(pair[1])
        pairs.append(pair)
    return pairs


def import_baseline(path: str, workdir: Path) -> str:
    """Imports the ``seglab`` package of the checkout at ``path`` as ``seglab_baseline`` (a copy in
    ``workdir`` with its ``seglab`` imports renamed), so that both run in this process."""
    copy = workdir / "seglab_baseline"
    shutil.copytree(Path(path) / "seglab", copy)
    for source in copy.rglob("*.py"):
        text = re.sub(r"\bseglab\.(?=[a-z_])", "seglab_baseline.", source.read_text())
        source.write_text(
            re.sub(r"^(\s*)(from|import) seglab\b", r"\1\2 seglab_baseline", text, flags=re.M)
        )
    sys.path.insert(0, str(workdir))
    importlib.import_module("seglab_baseline")
    return "seglab_baseline"


def seglab_pipeline(
    pairs: list,
    crop: tuple[int, int],
    cache_dir: Path | None = None,
    on_device: bool = False,
    package: str = "seglab",
) -> Callable[[int], dict]:
    data = importlib.import_module(f"{package}.data")
    transforms = importlib.import_module(f"{package}.data.transforms")
    folder = importlib.import_module(f"{package}.data.datasets.folder")
    augment = data.Augment()
    if not on_device:
        transform = transforms.train_transform(crop, augment, IGNORE, IMAGENET_MEAN, IMAGENET_STD)
    elif hasattr(transforms, "geometric_transform"):  # a baseline from before one augmentation
        transform = transforms.geometric_transform(crop, augment, IGNORE)
    else:  # the workers' share with data.augment_on_device: scale and crop only
        transform = transforms.train_transform(crop, augment, IGNORE, on_device=True)
    cache = importlib.import_module(f"{package}.data.cache")
    base = importlib.import_module(f"{package}.data.datasets.base")
    if not hasattr(base, "TransformedDataset"):  # a baseline from before the cache wrapper
        dataset = folder.FolderDataset(pairs, NUM_CLASSES, ignore_index=IGNORE, transform=transform)
        if cache_dir is not None:
            dataset.cache = cache.open_cache(dataset, cache_dir, "train")
        return lambda i: dataset[i]
    source = folder.FolderDataset(pairs, NUM_CLASSES, ignore_index=IGNORE)
    if cache_dir is not None:  # read -> cache -> transform, as the data module puts them
        source = cache.open_cache(source, cache_dir, "train")
    dataset = base.TransformedDataset(source, transform)
    return lambda i: dataset[i]


def device_batch_pipeline(
    pairs: list, crop: tuple[int, int], package: str = "seglab"
) -> Callable[[int], dict]:
    """``BatchAugment`` on a collated batch of ``BATCH`` workers' crops, on the CPU; one call is a
    batch (its rate is divided into samples by the caller)."""
    crops = seglab_pipeline(pairs, crop, on_device=True, package=package)
    torch.manual_seed(0)
    batch = default_collate([crops(i % len(pairs)) for i in range(BATCH)])
    data = importlib.import_module(f"{package}.data")
    augment = data.BatchAugment(data.Augment(), IMAGENET_MEAN, IMAGENET_STD)

    def run(i: int) -> dict:
        image, mask = augment(batch["image"], batch["mask"])
        return {"image": image, "mask": mask}

    return run


def albumentations_pipeline(
    pairs: list, crop: tuple[int, int], antialias: bool = False
) -> Callable[[int], dict]:
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
    """Median calls per CPU second of each pipeline over ``reps`` interleaved rounds of
    ``samples`` calls."""
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for fn in pipelines.values():  # warm-up: imports, allocator, page cache
        fn(0)
    for rep in range(reps):
        names = list(pipelines)
        names = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the order
        for name in names:
            torch.manual_seed(rep)
            start = time.process_time()
            for k in range(samples):
                out = pipelines[name](k % count)
            rates[name].append(samples / (time.process_time() - start))
            assert out["image"].dtype in (torch.float32, torch.uint8)
            assert out["mask"].dtype == torch.long
    return {name: statistics.median(r) for name, r in rates.items()}


def run_case(
    crop: tuple[int, int], pairs: list, args, workdir: Path, baseline: str | None
) -> dict[str, float]:
    """samples/s of every pipeline on one case's files (``before_*``: the baseline's)."""
    pipelines = {}
    for prefix, package in [("", "seglab")] + ([("before_", baseline)] if baseline else []):
        pipelines[prefix + "seglab"] = seglab_pipeline(pairs, crop, package=package)
        if args.cache:
            cache_dir = workdir / f"cache-{prefix.rstrip('_') or 'after'}"
            pipelines[prefix + "seglab_cached"] = seglab_pipeline(
                pairs, crop, cache_dir, package=package
            )
        pipelines[prefix + "seglab_workers_on_device"] = seglab_pipeline(
            pairs, crop, on_device=True, package=package
        )
        pipelines[prefix + "device_batch"] = device_batch_pipeline(pairs, crop, package)
    if args.albumentations:
        pipelines["albumentations"] = albumentations_pipeline(pairs, crop)
        pipelines["albumentations_antialias"] = albumentations_pipeline(pairs, crop, True)
    rates = measure(pipelines, len(pairs), args.samples or len(pairs), args.reps)
    for name in rates:
        if name.endswith("device_batch"):
            rates[name] *= BATCH  # batches/s -> samples/s
    return rates


def report(name: str, size: tuple[int, int], crop: tuple[int, int], rates: dict) -> None:
    prefix = f"{name}_{size[0]}x{size[1]}_crop{crop[0]}x{crop[1]}"
    for pipeline, rate in rates.items():
        print(f"{prefix}_{pipeline}: {rate:.1f} samples/s")
    for label in ("", "before_"):
        if label + "device_batch" in rates:
            ms = 1000 * BATCH / rates[label + "device_batch"]
            print(f"{prefix}_{label}device_batch{BATCH}_cpu: {ms:.1f} ms/batch")
    if "albumentations" in rates:
        for variant in ("albumentations", "albumentations_antialias"):
            print(f"{name} ratio seglab/{variant}: {rates['seglab'] / rates[variant]:.2f} x")
            if "before_seglab" in rates:
                ratio = rates["before_seglab"] / rates[variant]
                print(f"{name} ratio before_seglab/{variant}: {ratio:.2f} x")
    if "seglab_cached" in rates:
        print(f"{name} ratio cached/decode: {rates['seglab_cached'] / rates['seglab']:.2f} x")
    print(
        f"{name} ratio workers_on_device/full: "
        f"{rates['seglab_workers_on_device'] / rates['seglab']:.2f} x"
    )
    for pipeline in ("seglab", "seglab_cached", "seglab_workers_on_device", "device_batch"):
        if "before_" + pipeline in rates:
            ratio = rates[pipeline] / rates["before_" + pipeline]
            print(f"{name} ratio after/before {pipeline}: {ratio:.2f} x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny images, one repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--samples", type=int, default=0, help="samples per repetition")
    parser.add_argument("--cases", nargs="+", default=["small", "large"])
    parser.add_argument("--no-albumentations", dest="albumentations", action="store_false")
    parser.add_argument("--no-cache", dest="cache", action="store_false")
    parser.add_argument("--baseline", help="another seglab checkout to compare with (before/after)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker = one core
    if args.albumentations:
        try:
            import albumentations  # noqa: F401
        except ImportError:
            print("albumentations not installed (pip install 'seglab[bench]'): skipping it")
            args.albumentations = False
    cases = QUICK_CASES if args.quick else CASES
    if args.quick:
        args.reps = 1
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        baseline = import_baseline(args.baseline, workdir) if args.baseline else None
        for name in args.cases:
            size, crop, count = cases[name]
            pairs = write_dataset(workdir / name, count, size)
            rates = run_case(crop, pairs, args, workdir / f"{name}-work", baseline)
            report(name, size, crop, rates)


if __name__ == "__main__":
    main()
