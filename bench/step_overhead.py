"""Per-step overhead: seglab's training loop against a bare PyTorch loop doing the same work.

    python bench/step_overhead.py [--device cpu] [--arch unet] [--encoder resnet18] [--size 64]
                                  [--batch 8] [--steps 30] [--warmup 5] [--repeats 3]
                                  [--precision 32-true|bf16-mixed|16-mixed] [--channels_last]
                                  [--compile [--compile_backend inductor]] [--model_kwargs JSON]

Both loops train the same network (``create_model`` through ``SegmentationModule``), with the same
loss object, the same grouped AdamW (``param_groups``), a ``PolyLR`` stepped every iteration,
on the same in-memory batches from a ``DataLoader`` over a ``TensorDataset``. The seglab side is a
``Trainer`` configured the way ``seglab fit`` runs it: CSVLogger, TQDM progress bar, checkpointing
on (saved when training ends, outside the timed window), ``log_every_n_steps`` at Lightning's
default, the CLI's default callbacks (``ResumeState``, ``Throughput``, ``NonFiniteLoss``) and
checkpoint plugin; ``--channels_last``/``--compile`` add the ``ChannelsLast``/``Compile`` callbacks.

Each step is timed from its start to the next step's start (on CUDA after waiting for the device,
on both sides alike), so every per-step cost of the loop is inside it: fetching the batch, hooks,
logging, the progress bar. A run's rate is images over the median of its ``steps`` step times
after ``warmup`` untimed steps (robust to other jobs stalling single steps on a shared machine).
The two loops alternate ``repeats`` times; the medians over runs are printed as ``name: value
unit`` lines with the ratio seglab/bare, then the model FLOPs of one training image (forward +
backward of the network, counted by Lightning's ``measure_flops``) and the model FLOP utilisation
(MFU) of the seglab rate: achieved model FLOP/s over the dense matrix-product rate the device
reaches for the run's precision, measured in the same run (datasheet peaks are not what a chip
reaches, and Lightning's table has no entry for some chips, e.g. the plain "NVIDIA H200").
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import tempfile
import time
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from seglab.callbacks import (
    AtomicCheckpointIO,
    ChannelsLast,
    Compile,
    NonFiniteLoss,
    ResumeState,
    Throughput,
)
from seglab.models import SegmentationModule
from seglab.models.param_groups import param_groups
from seglab.optim import PolyLR

NUM_CLASSES = 8


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_loader(args: argparse.Namespace) -> DataLoader:
    """``warmup + steps + 1`` batches of images and uint8 masks, in memory; the extra batch marks
    the end of the timed window."""
    n = args.batch * (args.warmup + args.steps + 1)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, args.size, args.size, generator=g)
    masks = torch.randint(0, NUM_CLASSES, (n, args.size, args.size), generator=g, dtype=torch.uint8)
    return DataLoader(TensorDataset(images, masks), batch_size=args.batch, pin_memory=False)


def make_module(args: argparse.Namespace) -> SegmentationModule:
    """The network both loops train; without ``--model_kwargs`` a smp UNet gets the smaller
    decoder of the CPU runs in docs/benchmarks.md (depth 4, ``[128, 64, 32, 16]``)."""
    torch.manual_seed(0)
    model_kwargs = args.model_kwargs
    if model_kwargs is None:
        small_unet = args.arch == "unet" and not args.encoder.startswith("tu-")
        model_kwargs = {"encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]}
        model_kwargs = model_kwargs if small_unet else {}
    return SegmentationModule(
        arch=args.arch,
        encoder_name=args.encoder,
        num_classes=NUM_CLASSES,
        loss={"ce": 1.0, "dice": 0.5},
        lr_scheduler=functools.partial(PolyLR, warmup_steps=5),
        lr=1e-3,
        backbone_lr_mult=0.1,
        weight_decay=1e-4,
        model_kwargs=model_kwargs,
    )


def flops_per_image(args: argparse.Namespace) -> int:
    """Forward + backward FLOPs of the network for one image, counted on the meta device (the loss
    is left out: a few element-wise passes, nothing next to the convolutions). Built on the CPU
    first: some encoders (MiT) read tensor values while they are built."""
    model = make_module(args).model.to("meta")
    images = torch.randn(args.batch, 3, args.size, args.size, device="meta")
    return measure_flops(model, lambda: model(images), lambda y: y.sum()) // args.batch


def matmul_flops_per_second(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """Dense matrix-product FLOP/s on random data: the ceiling MFU is measured against. float32
    runs as convolutions run it (on CUDA cuDNN's default allows TF32 tensor cores)."""
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        for _ in range(3):
            a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def images_per_sec(times: list[float], args: argparse.Namespace) -> float:
    """Images over the median step time of the timed window: other jobs on a shared machine stall
    single steps; the median ignores those stalls, a mean would not."""
    steps = times[args.warmup : args.warmup + args.steps + 1]
    durations = [b - a for a, b in itertools.pairwise(steps)]
    return args.batch / statistics.median(durations)


class _Clock(L.Callback):
    """Reads the clock at the start of every step (on CUDA after waiting for the device)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self.times.append(time.perf_counter())


def seglab_images_per_sec(args: argparse.Namespace, loader: DataLoader) -> float:
    module = make_module(args)
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator=args.device,
            devices=1,
            precision=args.precision,
            max_steps=args.warmup + args.steps + 1,
            logger=CSVLogger(tmp),
            enable_progress_bar=args.refresh_rate > 0,
            default_root_dir=tmp,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            plugins=[AtomicCheckpointIO()],
            callbacks=[
                ResumeState(),
                NonFiniteLoss(args.nonfinite_loss),
                *([ChannelsLast()] if args.channels_last else []),
                *([Compile(backend=args.compile_backend)] if args.compile else []),
                *([TQDMProgressBar(args.refresh_rate)] if args.refresh_rate > 0 else []),
                *([] if args.no_throughput else [Throughput()]),
                clock,
            ],
        )
        trainer.fit(module, train_dataloaders=loader)
    return images_per_sec(clock.times, args)


def bare_images_per_sec(args: argparse.Namespace, loader: DataLoader) -> float:
    """What a user would write by hand: the same pieces, no framework."""
    device = torch.device(args.device)
    reference = make_module(args)  # the same factory and loss; only its parts are used
    model, criterion = reference.model.to(device).train(), reference.criterion
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if args.compile:
        model.compile(backend=args.compile_backend)
    groups = param_groups(model, model.encoder, 0.1, weight_decay=1e-4)
    for group in groups:  # the encoder's rate set once: this loop's schedule keeps the ratio
        group["lr"] = 1e-3 * group.pop("lr_mult")
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    scheduler = PolyLR(optimizer, total_steps=args.warmup + args.steps + 1, warmup_steps=5)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    times = []
    for step, (image, mask) in enumerate(loader):
        _sync(device)
        times.append(time.perf_counter())
        if step == args.warmup + args.steps:
            break
        image = image.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        mask = mask.to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = criterion(model(image), mask)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    return images_per_sec(times, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each loop")
    parser.add_argument(
        "--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"]
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)"
    )
    parser.add_argument("--nonfinite_loss", default="stop", choices=["stop", "skip"])
    parser.add_argument("--refresh_rate", type=int, default=1, help="progress bar; 0: off")
    parser.add_argument("--no_throughput", action="store_true", help="without the Throughput log")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile_backend", default="inductor", help="e.g. aot_eager: no codegen")
    parser.add_argument(
        "--model_kwargs", type=json.loads, default=None, help='JSON, e.g. "{}": smp defaults'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    loader = make_loader(args)
    bare, seglab = [], []
    for repeat in range(args.repeats):  # alternate the order so drifting load hits both
        first, second = (bare, seglab) if repeat % 2 == 0 else (seglab, bare)
        for results in (first, second):
            run = bare_images_per_sec if results is bare else seglab_images_per_sec
            results.append(run(args, loader))
    result = {"bare": statistics.median(bare), "seglab": statistics.median(seglab)}
    config = (
        f"{args.arch}/{args.encoder} {args.size}px batch {args.batch} {args.precision}"
        f"{' channels_last' if args.channels_last else ''}{' compile' if args.compile else ''}"
        f" on {args.device}, {args.steps} timed steps x {args.repeats} repeats"
    )
    print(f"config: {config}")
    print(f"bare_pytorch: {result['bare']:.1f} images/s")
    print(f"seglab: {result['seglab']:.1f} images/s")
    print(f"ratio seglab/bare: {result['seglab'] / result['bare']:.3f} x")
    print(f"runs bare: {', '.join(f'{v:.1f}' for v in bare)} images/s")
    print(f"runs seglab: {', '.join(f'{v:.1f}' for v in seglab)} images/s")
    flops = flops_per_image(args)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    dtype = dtype or torch.float32
    ceiling = matmul_flops_per_second(torch.device(args.device), dtype)
    achieved = flops * result["seglab"]
    print(f"model_flops_per_image: {flops / 1e9:.2f} GFLOP (forward + backward)")
    print(f"seglab_model_tflops: {achieved / 1e12:.2f} TFLOP/s")
    print(f"matmul_ceiling: {ceiling / 1e12:.2f} TFLOP/s ({str(dtype).removeprefix('torch.')})")
    print(f"seglab_mfu: {achieved / ceiling:.3f} (of the matmul ceiling)")
    return result


if __name__ == "__main__":
    main()
