"""Samples/s of one data-loading worker core: decode + full training augmentation.

seglab's pipeline (``FolderDataset`` + ``train_transform`` with the default ``Augment``: random scale
0.5-2, crop with padding, horizontal flip, colour jitter, gamma, blur p=0.1, normalisation) against
the albumentations pipeline users would otherwise write (``cv2.imread``; RandomScale, PadIfNeeded,
RandomCrop, HorizontalFlip, ColorJitter, RandomGamma, GaussianBlur, Normalize, ToTensorV2 with the
same parameters), and seglab reading from its decoded-sample cache (``data.cache_dir``) instead of
decoding. ``seglab_workers_on_device``: what a worker does with ``data.augment_on_device`` (decode,
scale, crop; uint8 out); ``device_batch``: the rest of that path, ``BatchAugment`` on a collated
batch of those crops, measured here on the CPU. All in one process with one thread (as in a
DataLoader worker), repetitions interleaved, the median reported; rates are samples per second of
CPU time (``time.process_time``), which other jobs on a shared machine disturb less than wall time.
Images are generated photo-like (multi-scale noise, edges, sensor noise) so PNG decoding costs what
it costs on real photos.

    python bench/data_pipeline.py            # both sizes; needs `pip install seglab[bench]`
    python bench/data_pipeline.py --quick    # tiny sizes, a smoke test
    python bench/data_pipeline.py --baseline /tmp/seglab-before   # before/after, see below

``--baseline PATH`` compares with the seglab checkout at ``PATH`` (e.g. ``git worktree add
/tmp/seglab-before main``): every repetition runs this script once with each checkout first on
``PYTHONPATH``, in alternating order, on the same generated files, and the medians and their
after/before ratios are printed. The baseline only needs ``train_transform`` and ``BatchAugment``
(older checkouts name the workers' transform ``geometric_transform``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from seglab.data import Augment, BatchAugment
from seglab.data.cache import open_cache
from seglab.data.datasets.folder import FolderDataset
from seglab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform

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


def workers_transform(crop: tuple[int, int]) -> Callable:
    """The workers' share with ``data.augment_on_device``: scale and crop only."""
    try:
        return train_transform(crop, Augment(), IGNORE, on_device=True)
    except TypeError:  # a baseline checkout from before the one augmentation implementation
        transforms = importlib.import_module("seglab.data.transforms")
        return transforms.geometric_transform(crop, Augment(), IGNORE)


def seglab_pipeline(
    pairs: list, crop: tuple[int, int], cache_dir: Path | None = None, on_device: bool = False
) -> Callable[[int], dict]:
    if on_device:
        transform = workers_transform(crop)
    else:
        transform = train_transform(crop, Augment(), IGNORE, IMAGENET_MEAN, IMAGENET_STD)
    dataset = FolderDataset(pairs, NUM_CLASSES, ignore_index=IGNORE, transform=transform)
    if cache_dir is not None:
        dataset.cache = open_cache(dataset, cache_dir, "train")
    return lambda i: dataset[i]


def device_batch_pipeline(pairs: list, crop: tuple[int, int]) -> Callable[[int], dict]:
    """``BatchAugment`` on a collated batch of ``BATCH`` workers' crops, on the CPU; one call is a
    batch (its rate is divided into samples by the caller)."""
    crops = seglab_pipeline(pairs, crop, on_device=True)
    torch.manual_seed(0)
    batch = default_collate([crops(i % len(pairs)) for i in range(BATCH)])
    augment = BatchAugment(Augment(), IMAGENET_MEAN, IMAGENET_STD)

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
    size: tuple[int, int], crop: tuple[int, int], pairs: list, args, cache_dir: Path
) -> dict[str, float]:
    """samples/s of every pipeline on one case's files."""
    pipelines = {"seglab": seglab_pipeline(pairs, crop)}
    if args.cache:
        pipelines["seglab_cached"] = seglab_pipeline(pairs, crop, cache_dir)
    pipelines["seglab_workers_on_device"] = seglab_pipeline(pairs, crop, on_device=True)
    pipelines["device_batch"] = device_batch_pipeline(pairs, crop)
    if args.albumentations:
        pipelines["albumentations"] = albumentations_pipeline(pairs, crop)
        pipelines["albumentations_antialias"] = albumentations_pipeline(pairs, crop, True)
    rates = measure(pipelines, len(pairs), args.samples or len(pairs), args.reps)
    rates["device_batch"] *= BATCH  # batches/s -> samples/s
    return rates


def report(name: str, size: tuple[int, int], crop: tuple[int, int], rates: dict) -> None:
    prefix = f"{name}_{size[0]}x{size[1]}_crop{crop[0]}x{crop[1]}"
    for pipeline, rate in rates.items():
        print(f"{prefix}_{pipeline}: {rate:.1f} samples/s")
    print(f"{prefix}_device_batch{BATCH}_cpu: {1000 * BATCH / rates['device_batch']:.1f} ms/batch")
    if "albumentations" in rates:
        for variant in ("albumentations", "albumentations_antialias"):
            print(f"{name} ratio seglab/{variant}: {rates['seglab'] / rates[variant]:.2f} x")
    if "seglab_cached" in rates:
        print(f"{name} ratio cached/decode: {rates['seglab_cached'] / rates['seglab']:.2f} x")
    print(
        f"{name} ratio workers_on_device/full: "
        f"{rates['seglab_workers_on_device'] / rates['seglab']:.2f} x"
    )


def compare(args, cases: dict, root: Path) -> None:
    """Alternating child runs with this checkout and the baseline; medians and ratios."""
    here = str(Path(__file__).resolve().parents[1])
    runs: dict[str, list[dict]] = {"after": [], "before": []}
    for rep in range(args.reps):
        order = [("after", here), ("before", args.baseline)]
        for label, path in order if rep % 2 == 0 else order[::-1]:
            command = [sys.executable, __file__, "--child", str(root / label), "--reps", "3"]
            command += ["--cases", *args.cases] + (["--quick"] if args.quick else [])
            command += [] if args.albumentations else ["--no-albumentations"]
            env = {**os.environ, "PYTHONPATH": path}
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{label} run ({path}) failed:\n{done.stderr[-3000:]}")
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for name in args.cases:
        size, crop, _ = cases[name]
        medians = {}
        for label in runs:
            pipelines = runs[label][0][name]
            medians[label] = {
                p: statistics.median(r[name][p] for r in runs[label]) for p in pipelines
            }
            print(f"[{label}]")
            report(name, size, crop, medians[label])
        for pipeline in ("seglab", "seglab_cached", "seglab_workers_on_device", "device_batch"):
            if pipeline in medians["after"]:
                ratio = medians["after"][pipeline] / medians["before"][pipeline]
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
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one run of --baseline: a work dir
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker = one core
    if args.albumentations:
        try:
            import albumentations  # noqa: F401
        except ImportError:
            print("albumentations not installed (pip install 'seglab[bench]'): skipping it")
            args.albumentations = False
    cases = QUICK_CASES if args.quick else CASES
    if args.quick and not args.baseline:
        args.reps = 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.child or tmp)
        if args.baseline:
            for name in args.cases:
                size, _, count = cases[name]
                write_dataset(root / "data" / name, count, size)
            compare(args, cases, root)
            return
        if not args.child:
            print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
        results = {}
        for name in args.cases:
            size, crop, count = cases[name]
            pairs = write_dataset(
                root.parent / "data" / name if args.child else root / name, count, size
            )
            results[name] = run_case(size, crop, pairs, args, root / f"cache-{name}")
            if not args.child:
                report(name, size, crop, results[name])
        if args.child:
            print(json.dumps(results))


if __name__ == "__main__":
    main()
