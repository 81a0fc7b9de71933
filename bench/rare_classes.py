"""Rare, thin classes: what class weighting, rare-class sampling and the default augmentation buy.

    python bench/rare_classes.py [--steps 400] [--seeds 0 1 2] [--variants ...] [--quick]

Synthetic street scenes (``SyntheticDataModule(scene="street")``: sky, building, road and cars cover
over 99% of the pixels; one- or two-pixel poles about 0.5% and small signs about 0.25%) train a
UNet-ResNet18 (the quickstart's reduced decoder) from scratch for the same number of steps under
each variant and seed, in this process, one after the other; each is then validated on the same
held-out scenes. Variants:

- ``baseline``: seglab's defaults (cross-entropy; flip, scale 0.75-1.5, crop, colour jitter with
  hue, gamma, blur; no weight decay on biases and norms; shuffling without replacement).
- ``median_frequency``: ``seglab.losses.CrossEntropyLoss(class_weights="median_frequency")``.
- ``rare_class_sampling``: ``data.rare_class_sampling: {temperature: 0.01}`` (DAFormer's rule).
- ``both``: the two together.
- ``plain``: the hand-written loop's pipeline of issue #17: flip, scale, crop and brightness /
  contrast / saturation jitter only (no hue, gamma or blur), weight decay on every parameter, and
  training samples drawn with replacement.

Prints ``name: value`` lines: per variant the seed-mean IoU of each rare class, of the frequent
classes together and the mIoU, then each variant's difference to ``baseline``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, RandomSampler

from seglab import Augment, SegmentationModule, SyntheticDataModule
from seglab.data.sampling import RareClassSampling
from seglab.losses import CrossEntropyLoss
from seglab.optim import PolyLR

RARE = ("pole", "sign")
FREQUENT = ("sky", "building", "road", "car")
VARIANTS = ("baseline", "median_frequency", "rare_class_sampling", "both", "plain")


class WithReplacement(SyntheticDataModule):
    """Training samples drawn with replacement, as the hand-written loop did."""

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        sampler = RandomSampler(loader.dataset, replacement=True)
        return DataLoader(
            loader.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
        )


class DecayEverything(SegmentationModule):
    """Weight decay on every parameter (biases and norms too), as the hand-written loop did."""

    def configure_optimizers(self) -> dict:
        settings = super().configure_optimizers()
        for group in settings["optimizer"].param_groups:
            group["weight_decay"] = self.hparams.weight_decay
        return settings


def run(variant: str, seed: int, args: argparse.Namespace, cache: str) -> dict[str, float]:
    L.seed_everything(seed, verbose=False)
    plain = variant == "plain"
    augment = Augment(scale_range=(0.75, 1.5))
    if plain:
        augment = Augment(scale_range=(0.75, 1.5), hue=0.0, gamma=(1.0, 1.0), blur_prob=0.0)
    sampling = variant in ("rare_class_sampling", "both")
    data = (WithReplacement if plain else SyntheticDataModule)(
        scene="street",
        image_size=args.size,
        crop_size=args.crop,
        num_train=args.train,
        num_val=args.val,
        batch_size=args.batch,
        num_workers=0,
        augment=augment,
        rare_class_sampling=RareClassSampling(0.01) if sampling else None,
        cache_dir=cache,
    )
    weights = "median_frequency" if variant in ("median_frequency", "both") else None
    module = (DecayEverything if plain else SegmentationModule)(
        arch="unet",
        encoder_name=args.encoder,
        num_classes=data.num_classes,
        class_names=data.class_names,
        loss=CrossEntropyLoss(class_weights=weights),
        lr_scheduler=functools.partial(PolyLR, warmup_ratio=0.05),
        lr=3e-3,
        backbone_lr_mult=1.0,
        weight_decay=1e-4,
        model_kwargs=args.model_kwargs,
    )
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        max_epochs=-1,
        limit_val_batches=0,  # validated once, at the end
        enable_checkpointing=False,
        **quiet,
    )
    trainer.fit(module, data)
    metrics = L.Trainer(accelerator="cpu", **quiet).validate(module, data, verbose=False)[0]
    iou = {name: float(metrics[f"val/IoU/{name}"]) for name in data.class_names}
    return {
        **{name: iou[name] for name in RARE},
        "frequent": statistics.fmean(iou[name] for name in FREQUENT),
        "mIoU": float(metrics["val/mIoU"]),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--val", type=int, default=96)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--quick", action="store_true", help="toy sizes: proves the script runs")
    args = parser.parse_args(argv)
    args.model_kwargs = {"encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]}
    if args.quick:
        args.steps, args.seeds, args.train, args.val, args.batch = 2, args.seeds[:1], 8, 4, 4
        args.size, args.crop, args.encoder, args.model_kwargs = 48, 32, "tu-test_resnet", {}
    print(
        f"config: street scenes {args.size}px, crops {args.crop}, batch {args.batch}, "
        f"{args.steps} steps, {args.encoder}, seeds {args.seeds}, torch threads "
        f"{torch.get_num_threads()}"
    )
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for variant in args.variants:
            runs = []
            for seed in args.seeds:
                start = time.perf_counter()
                runs.append(run(variant, seed, args, cache))
                shown = " ".join(f"{k} {v:.3f}" for k, v in runs[-1].items())
                print(f"run {variant} seed {seed}: {shown} ({time.perf_counter() - start:.0f} s)")
            results[variant] = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    for variant, scores in results.items():
        for name, value in scores.items():
            print(f"{variant}_{name}: {value:.3f} IoU")
    if "baseline" in results:
        for variant, scores in results.items():
            if variant != "baseline":
                diffs = " ".join(
                    f"{k} {v - results['baseline'][k]:+.3f}" for k, v in scores.items()
                )
                print(f"{variant} - baseline: {diffs}")
    return results


if __name__ == "__main__":
    main()
