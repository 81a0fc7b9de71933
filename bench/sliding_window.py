"""Sliding-window throughput: tiles run in batches against one tile per forward pass.

    python bench/sliding_window.py [--size 512 768] [--tile 256] [--tile_batch_size 8] [--device cpu]

Same model (UNet, timm ``test_resnet`` encoder), same image, same tiles; prints ``name: value unit``
lines and the ratio batched / one-at-a-time.
"""

from __future__ import annotations

import argparse
import time

import torch

from seglab.inference import sliding_window
from seglab.inference.sliding_window import tile_starts
from seglab.models import SegmentationModule


def tiles_per_second(
    model, image, tile: int, overlap: float, tile_batch_size: int, repeats: int
) -> float:
    h, w = image.shape[-2:]
    stride = max(1, round(tile * (1 - overlap)))
    tiles = len(tile_starts(h, tile, stride)) * len(tile_starts(w, tile, stride))
    sliding_window(model, image, tile, overlap, tile_batch_size=tile_batch_size)  # warm-up
    if image.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        sliding_window(model, image, tile, overlap, tile_batch_size=tile_batch_size)
    if image.is_cuda:
        torch.cuda.synchronize()
    return tiles * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[512, 768], help="image height width")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--tile_batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SegmentationModule(encoder_name="tu-test_resnet", num_classes=19).eval().to(args.device)
    image = torch.randn(1, 3, *args.size, device=args.device)
    one = tiles_per_second(model, image, args.tile, args.overlap, 1, args.repeats)
    batched = tiles_per_second(
        model, image, args.tile, args.overlap, args.tile_batch_size, args.repeats
    )
    print(f"one_tile_at_a_time: {one:.1f} tiles/s")
    print(f"batched_{args.tile_batch_size}: {batched:.1f} tiles/s")
    print(f"ratio batched/one_at_a_time: {batched / one:.2f} x")


if __name__ == "__main__":
    main()
