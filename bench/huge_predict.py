"""Streamed prediction of images larger than memory: peak memory against the image's size, and
tiles/s against today's in-memory sliding window.

    python bench/huge_predict.py [--sizes 4096 16384] [--compare 1024] [--tile 256]
                                 [--overlap 0.25] [--tile_batch_size 4] [--network conv|unet]
                                 [--encoder tu-test_resnet] [--workdir /tmp/huge_predict]

Generates georeferenced RGB GeoTIFFs (tiled, deflate; written window by window) of each size, then
predicts each in a fresh process with the same model (``--network``: two convolutions, or UNet
with ``--encoder``; 6 classes) and tiles
through ``seglab.inference.stream_predict`` (GeoTIFF in, GeoTIFF out) and reports the process's peak
RSS (``wait4``). ``--compare``: one image both paths can hold, predicted in one process by today's
path (the whole normalised image through ``predict_logits``' sliding window) and by the streamed
path (reading and writing files included), with the UNet; tiles/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_image(path: Path, size: int) -> None:
    """A size x size RGB GeoTIFF of smooth shapes and noise, written 512 rows at a time."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    if path.exists():
        return
    profile = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", nodata=0)
    profile.update(crs="EPSG:32631", transform=from_origin(431000.0, 5411000.0, 0.3, 0.3))
    profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="YES")
    rng = np.random.default_rng(0)
    x = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as out:
        for r0 in range(0, size, 512):
            rows = np.arange(r0, min(r0 + 512, size), dtype=np.float32)[:, None]
            base = 128 + 100 * np.sin(rows / 97.0) * np.cos(x[None] / 61.0)
            band = np.stack([base, base[::-1], 255 - base]) + rng.normal(0, 8, (3, *base.shape))
            out.write(band.clip(1, 255).astype(np.uint8), window=Window(0, r0, size, len(rows)))


def model(network: str, encoder: str):
    """``unet``: UNet with ``encoder``; ``conv``: two convolutions, for measuring memory and the
    streaming machinery where a real network would take an hour of a shared 2-core CPU."""
    import torch
    from torch import nn

    from seglab.models import SegmentationModule

    torch.manual_seed(0)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if network == "conv":
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 6, 1))
        return SegmentationModule(
            network=net, num_classes=6, mean=mean, std=std, backbone_lr_mult=1.0
        ).eval()
    module = SegmentationModule(
        arch="unet", encoder_name=encoder, num_classes=6, mean=mean, std=std
    )
    return module.eval()


def settings(args):
    from seglab.inference import Inference

    return Inference(
        mode="slide",
        tile_size=args.tile,
        overlap=args.overlap,
        tile_batch_size=args.tile_batch_size,
        band_rows=512,
    )


def child_streamed(args, image: Path, output: Path) -> dict:
    import torch

    from seglab.inference import stream_predict

    module = model(args.network, args.encoder)
    with torch.no_grad():
        result = stream_predict(
            module, image, output, settings(args), mean=module.hparams.mean,
            std=module.hparams.std, num_classes=6, overwrite=True,
        )  # fmt: skip
    return {"tiles": result.tiles, "seconds": result.seconds}


def child_compare(args, image: Path, output: Path) -> dict:
    import rasterio
    import torch

    from seglab.data.normalize import normalize
    from seglab.inference import predict_logits, stream_predict

    module = model("unet", args.encoder)
    s = settings(args)
    hp = module.hparams
    with torch.no_grad():
        module(torch.zeros(1, 3, args.tile, args.tile))  # warm-up
        t0 = time.perf_counter()
        with rasterio.open(image) as src:
            pixels = torch.from_numpy(src.read())
        ids = predict_logits(module, normalize(pixels[None], hp.mean, hp.std), s).argmax(1)
        memory_s = time.perf_counter() - t0
        result = stream_predict(
            module, image, output, s, mean=hp.mean, std=hp.std, num_classes=6, overwrite=True
        )
    with rasterio.open(output) as out:
        same = bool((out.read(1) == ids[0].numpy()).all())
    return {
        "tiles": result.tiles,
        "memory_s": memory_s,
        "streamed_s": result.seconds,
        "identical": same,
    }


def run_child(args, mode: str, image: Path, output: Path) -> tuple[dict, float]:
    """Runs a measurement in a fresh process: its result and its peak RSS in MB."""
    command = [sys.executable, __file__, "--child", mode, str(image), str(output)]
    command += ["--tile", str(args.tile), "--overlap", str(args.overlap)]
    command += ["--tile_batch_size", str(args.tile_batch_size), "--encoder", args.encoder]
    command += ["--network", args.network]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{mode} {image}: the measuring process failed ({status})")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--compare", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--tile_batch_size", type=int, default=4)
    parser.add_argument("--encoder", default="tu-test_resnet")
    parser.add_argument("--network", choices=["conv", "unet"], default="conv")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/huge_predict"))
    parser.add_argument("--child", nargs=3, metavar=("MODE", "IMAGE", "OUTPUT"))
    args = parser.parse_args()
    if args.child:
        mode, image, output = args.child
        child = child_streamed if mode == "streamed" else child_compare
        print(json.dumps(child(args, Path(image), Path(output))))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"tile: {args.tile} px, overlap {args.overlap}, batch {args.tile_batch_size}")
    print(f"sizes: {args.network} network; compare: UNet {args.encoder}; 6 classes")
    peaks = {}
    for size in args.sizes:
        image = args.workdir / f"image_{size}.tif"
        make_image(image, size)
        result, peak = run_child(args, "streamed", image, args.workdir / f"pred_{size}.tif")
        peaks[size] = peak
        print(f"streamed_{size}_peak_rss: {peak:.0f} MB")
        print(f"streamed_{size}_tiles_per_s: {result['tiles'] / result['seconds']:.2f} tiles/s")
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        print(f"peak_rss_ratio_{large}_vs_{small}: {peaks[large] / peaks[small]:.3f} x")
    if args.compare:
        image = args.workdir / f"image_{args.compare}.tif"
        make_image(image, args.compare)
        result, _ = run_child(args, "compare", image, args.workdir / "pred_compare.tif")
        memory = result["tiles"] / result["memory_s"]
        streamed = result["tiles"] / result["streamed_s"]
        print(f"in_memory_{args.compare}_tiles_per_s: {memory:.2f} tiles/s")
        print(f"streamed_{args.compare}_tiles_per_s: {streamed:.2f} tiles/s")
        print(f"streamed_vs_in_memory: {streamed / memory:.3f} x")
        print(f"class_ids_identical: {result['identical']}")


if __name__ == "__main__":
    main()
