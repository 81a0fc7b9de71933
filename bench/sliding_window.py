"""Sliding-window throughput: tiles run in batches against one tile per forward pass.

    python bench/sliding_window.py [--size 512 768] [--tile 128] [--tile_batch_size 8]
                                   [--device cpu] [--encoder tu-test_resnet] [--weighting gaussian]

Same model (UNet, 19 classes, timm ``test_resnet`` encoder unless ``--encoder``), same image, same
tiles and weighting; prints ``name: value unit`` lines and the ratio batched / one-at-a-time.
"""

from __future__ import annotations

import argparse
import time

import torch

from seglab.inference import sliding_window
from seglab.inference.sliding_window import tile_starts
from seglab.models import SegmentationModule


def tiles_per_image(image: torch.Tensor, tile: int, overlap: float) -> int:
    h, w = image.shape[-2:]
    stride = max(1, round(tile * (1 - overlap)))
    return len(tile_starts(h, tile, stride)) * len(tile_starts(w, tile, stride))


def tiles_per_second(
    model,
    image,
    tile: int,
    overlap: float,
    tile_batch_size: int,
    repeats: int,
    weighting: str = "gaussian",
) -> float:
    def run() -> None:
        sliding_window(
            model, image, tile, overlap, weighting=weighting, tile_batch_size=tile_batch_size
        )

    run()  # warm-up
    if image.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if image.is_cuda:
        torch.cuda.synchronize()
    return tiles_per_image(image, tile, overlap) * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[512, 768], help="image height width")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--tile_batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--encoder", default="tu-test_resnet")
    parser.add_argument("--weighting", default="gaussian", choices=["gaussian", "uniform"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = SegmentationModule(encoder_name=args.encoder, num_classes=19).eval().to(args.device)
    image = torch.randn(1, 3, *args.size, device=args.device)
    rates = {
        batch: tiles_per_second(
            model, image, args.tile, args.overlap, batch, args.repeats, args.weighting
        )
        for batch in (1, args.tile_batch_size)
    }
    one, batched = rates[1], rates[args.tile_batch_size]
    h, w = args.size
    print(f"config: {args.encoder} {h}x{w} image, {args.tile} px tiles, {args.weighting} weighting")
    print(f"tiles_per_image: {tiles_per_image(image, args.tile, args.overlap)}")
    print(f"one_tile_at_a_time: {one:.1f} tiles/s")
    print(f"batched_{args.tile_batch_size}: {batched:.1f} tiles/s")
    print(f"ratio batched/one_at_a_time: {batched / one:.2f} x")
    return {"one_tile_at_a_time": one, "batched": batched}


if __name__ == "__main__":
    main()
