"""Streamed tiled prediction (``seglab.inference.streaming``): window by window, georeferenced,
resumable, shared among processes, and equal to the in-memory sliding window."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab import SegmentationModule
from seglab.cli import main
from seglab.data.io import read_image_valid
from seglab.data.normalize import normalize
from seglab.data.palette import default_palette
from seglab.errors import ConfigError, DataError
from seglab.inference import Inference, predict_logits, sliding_window
from seglab.inference.streaming import should_stream, stream_predict, tile_forward
from tests.conftest import REPO, user_error
from tests.inference.test_predict_cli import predict_args

rasterio = pytest.importorskip("rasterio")
tifffile = pytest.importorskip("tifffile")
from rasterio.transform import from_origin  # noqa: E402

SLIDE = ["--model.inference.mode", "slide", "--model.inference.tile_size", "64"]
SLIDE += ["--model.inference.overlap", "0.25", "--model.inference.weighting", "gaussian"]
SLIDE += ["--model.inference.tile_batch_size", "3", "--model.inference.band_rows", "32"]
SETTINGS = Inference(mode="slide", tile_size=64, overlap=0.25, tile_batch_size=3, band_rows=32)


def write_tiled(path: Path, image: np.ndarray, crs: str, transform, block: int) -> np.ndarray:
    """``image`` (C, H, W) as a tiled GeoTIFF on ``crs``/``transform`` with nodata 0."""
    count, h, w = image.shape
    profile = dict(driver="GTiff", height=h, width=w, count=count, dtype=image.dtype, nodata=0)
    with rasterio.open(
        path, "w", tiled=True, blockxsize=block, blockysize=block, crs=crs, transform=transform,
        **profile,
    ) as out:  # fmt: skip
        out.write(image)
    return image


def write_geotiff(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    """A UTM-referenced RGB GeoTIFF with nodata 0 over a block of whole tiles and a ragged edge."""
    image = np.random.default_rng(seed).integers(1, 256, (3, h, w), dtype=np.uint8)
    image[:, 70:200, :100] = 0  # whole tiles of nodata (not run) and tiles partly nodata
    image[:, -5:, -9:] = 0
    return write_tiled(path, image, "EPSG:32631", from_origin(431000.0, 5411000.0, 0.3, 0.3), 64)


def in_memory(module, image: np.ndarray, settings: Inference = SETTINGS) -> np.ndarray:
    """Today's path: the whole normalised image through predict_logits' sliding window."""
    x = normalize(torch.from_numpy(image)[None], module.hparams.mean, module.hparams.std)
    with torch.no_grad():
        return predict_logits(module.eval(), x, settings).argmax(1)[0].numpy()


@pytest.fixture(scope="module")
def module(checkpoint):
    return SegmentationModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()


def stream(module, image, output, settings=SETTINGS, forward=None, **kwargs):
    hp = module.hparams
    with torch.no_grad():
        return stream_predict(
            forward or module, image, output, settings, mean=hp.mean, std=hp.std,
            num_classes=hp.num_classes, **kwargs,
        )  # fmt: skip


def test_geotiff_keeps_georeference_and_nodata_and_equals_the_in_memory_window(
    checkpoint, module, tmp_path, capsys
):
    images = tmp_path / "images"
    images.mkdir()
    image = write_geotiff(images / "scene.tif", 300, 230)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images / "small.png")  # in memory
    out = tmp_path / "out"
    main(predict_args(checkpoint, images, out, *SLIDE, "--save_probabilities", "npy"))
    assert "scene.tif -> " in capsys.readouterr().err
    assert (out / "small.png").is_file() and (out / "small_probs.npy").is_file()
    assert not list(out.glob(".*"))  # parts removed
    nodata = (image == 0).all(0)
    with rasterio.open(images / "scene.tif") as src, rasterio.open(out / "scene.tif") as ids:
        assert ids.crs == src.crs and ids.transform == src.transform
        assert (ids.height, ids.width, ids.count, ids.dtypes[0]) == (300, 230, 1, "uint8")
        assert ids.nodata == 255 and ids.profile["tiled"] and ids.compression.name == "deflate"
        assert ids.colormap(1)[1] == (*default_palette()[1], 255)  # the model has none
        predicted = ids.read(1)
    assert (predicted[nodata] == 255).all()
    expected = in_memory(module, image)
    np.testing.assert_array_equal(predicted[~nodata], expected[~nodata])
    with rasterio.open(out / "scene_probs.tif") as probs:
        assert probs.count == 6 and probs.dtypes[0] == "uint8" and probs.crs == src.crs
        p = probs.read()
    assert (p[:, nodata] == 0).all() and abs(p[:, ~nodata].sum(0).astype(int) - 255).max() <= 6


def test_tiff_without_georeference_and_other_images_equal_the_sliding_window_with_tta(
    module, tmp_path
):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (150, 97, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", image, tile=(32, 32), compression="zlib")
    Image.fromarray(image).save(tmp_path / "plain.png")
    settings = Inference(
        mode="slide", tile_size=(48, 64), stride=(40, 30), weighting="uniform",
        tile_batch_size=2, band_rows=16, hflip=True,
    )  # fmt: skip
    # TTA is applied per tile: the in-memory sliding window of the per-tile TTA forward
    x = normalize(torch.from_numpy(image).permute(2, 0, 1)[None], *module_norm(module))
    with torch.no_grad():
        expected = sliding_window(
            tile_forward(module, settings), x, (48, 64), stride=(40, 30), weighting="uniform",
            tile_batch_size=2,
        ).argmax(1)[0].numpy()  # fmt: skip
    palette = [tuple(c) for c in default_palette()[:6]]
    for name in ("plain.tif", "plain.png"):
        output = tmp_path / f"out_{Path(name).suffix[1:]}.tif"
        result = stream(module, tmp_path / name, output, settings, palette=palette)
        assert result.tiles_run == result.tiles
        with tifffile.TiffFile(output) as tif:
            page = tif.pages.first
            assert page.is_tiled and page.photometric == tifffile.PHOTOMETRIC.PALETTE
            np.testing.assert_array_equal(page.asarray(), expected)


def module_norm(module):
    return module.hparams.mean, module.hparams.std


def test_an_interrupted_run_resumes_its_missing_bands_and_refuses_other_settings(module, tmp_path):
    image = write_geotiff(tmp_path / "scene.tif", 300, 230, seed=2)
    whole = stream(module, tmp_path / "scene.tif", tmp_path / "whole.tif")
    calls = []

    def dying(x):
        if len(calls) == 4:
            raise KeyboardInterrupt  # a kill, at a point the run cannot choose
        calls.append(1)
        return module(x)

    with pytest.raises(KeyboardInterrupt):
        stream(module, tmp_path / "scene.tif", tmp_path / "out.tif", forward=dying)
    parts = sorted(p.name for p in (tmp_path / ".out.tif.parts").glob("band_*.ids.npy"))
    assert 0 < len(parts) < 10
    other = Inference(mode="slide", tile_size=64, overlap=0.5, tile_batch_size=3, band_rows=32)
    with pytest.raises(DataError, match=r"another settings.*--overwrite true"):
        stream(module, tmp_path / "scene.tif", tmp_path / "out.tif", other)
    result = stream(module, tmp_path / "scene.tif", tmp_path / "out.tif")
    assert result.bands_done_before == len(parts) and result.tiles_run < whole.tiles_run
    with rasterio.open(tmp_path / "out.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert not (tmp_path / ".out.tif.parts").exists()
    assert image.shape == (3, 300, 230)


def test_a_truncated_tiff_is_named_with_its_window(module, tmp_path):
    image = np.random.default_rng(3).integers(0, 256, (256, 96, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cut.tif", image, tile=(32, 32), compression="zlib")
    data = (tmp_path / "cut.tif").read_bytes()
    with tifffile.TiffFile(tmp_path / "cut.tif") as tif:
        end = tif.pages.first.dataoffsets[-6]  # the last rows' tiles are cut off
    (tmp_path / "cut.tif").write_bytes(data[: end + 10])
    with pytest.raises(DataError, match=r"cut.tif: cannot read the window rows \d+-\d+, columns"):
        stream(module, tmp_path / "cut.tif", tmp_path / "out.tif")


def write_4band_uint16(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    """A UTM-referenced 4-band uint16 GeoTIFF (RGB + near-infrared reflectances) with nodata 0 over
    a block of whole tiles and a ragged edge."""
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 12000, (4, h, w), dtype=np.uint16)
    image[:, 40:170] = 0  # whole rows of tiles: chunks of nodata only, not run
    image[:, -3:, -11:] = 0
    return write_tiled(path, image, "EPSG:32632", from_origin(500000.0, 4800000.0, 10.0, 10.0), 32)


def test_a_4band_uint16_geotiff_streams_like_the_in_memory_window(tmp_path):
    """A model trained on 4-band uint16 data (per-band mean/std of value / 255) predicts a
    4-band uint16 GeoTIFF window by window: georeference, size and nodata of the input, class ids
    of the in-memory sliding window over what ``read_image_valid`` gives."""
    image = write_4band_uint16(tmp_path / "s2.tif", 200, 170)
    mean, std = (20.0, 22.0, 24.0, 26.0), (12.0, 13.0, 14.0, 15.0)  # of value / 255
    torch.manual_seed(0)
    module = SegmentationModule(
        arch="unet", encoder_name="tu-test_resnet", num_classes=4, in_channels=4,
        mean=mean, std=std,
    ).eval()  # fmt: skip
    result = stream(module, tmp_path / "s2.tif", tmp_path / "out.tif", in_channels=4)
    assert result.tiles_run < result.tiles  # the nodata tiles were not run
    nodata = (image == 0).all(0)
    with rasterio.open(tmp_path / "s2.tif") as src, rasterio.open(tmp_path / "out.tif") as ids:
        assert ids.crs == src.crs and ids.transform == src.transform
        assert (ids.height, ids.width, ids.count, ids.nodata) == (200, 170, 1, 255)
        predicted = ids.read(1)
    assert (predicted[nodata] == 255).all()
    pixels, valid = read_image_valid(tmp_path / "s2.tif")  # float32 raw values, nodata 0
    assert pixels.dtype == torch.float32 and torch.equal(~valid, torch.from_numpy(nodata))
    x = normalize(pixels[None], mean, std)
    with torch.no_grad():
        expected = predict_logits(module, x, SETTINGS).argmax(1)[0].numpy()
    np.testing.assert_array_equal(predicted[~nodata], expected[~nodata])
    assert len(np.unique(expected[~nodata])) > 1  # not a constant prediction


def test_images_the_model_does_not_fit_are_refused_naming_the_file(
    checkpoint, module, tmp_path, capsys
):
    five = np.zeros((5, 64, 64), np.uint8)
    tifffile.imwrite(tmp_path / "five.tif", five, planarconfig="separate", photometric="minisblack")
    with pytest.raises(ConfigError, match=r"five.tif: image has 5 uint8 bands.* 3 values"):
        stream(module, tmp_path / "five.tif", tmp_path / "out.tif")
    # a 16-bit RGB image for a model trained on 8-bit RGB (ImageNet's statistics): its values
    # divided by 255 are not what the model saw
    rgb16 = np.full((3, 64, 64), 40000, np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, planarconfig="separate", photometric="rgb")
    with pytest.raises(ConfigError, match=r"rgb16.tif: image has 3 non-uint8 .*ImageNet"):
        stream(module, tmp_path / "rgb16.tif", tmp_path / "out.tif")
    # through the command, the data module's check (the in-memory path's) refuses a 4-band
    # uint16 GeoTIFF for the 3-band model
    images = tmp_path / "images"
    images.mkdir()
    deep = np.random.default_rng(0).integers(0, 65535, (4, 64, 64), dtype=np.uint16)
    profile = dict(driver="GTiff", height=64, width=64, count=4, dtype="uint16", crs="EPSG:4326")
    profile.update(transform=from_origin(5.0, 45.0, 1e-4, 1e-4))
    with rasterio.open(images / "deep.tif", "w", **profile) as out:
        out.write(deep)
    args = predict_args(checkpoint, images, tmp_path / "out", *SLIDE)
    user_error(args, capsys, 2, "deep.tif", "image has 4 non-uint8", "ImageNet")
    assert not (tmp_path / "out" / "deep.tif").exists()
    (images / "deep.tif").unlink()
    (images / "rgb16.tif").write_bytes((tmp_path / "rgb16.tif").read_bytes())
    user_error(args, capsys, 2, "rgb16.tif", "image has 3 non-uint8", "ImageNet")


def test_streaming_is_chosen_by_size_and_georeference_and_overridable():
    auto = Inference(stream_above=1000)
    assert not should_stream(auto, 20, 50, False) and should_stream(auto, 20, 51, False)
    assert should_stream(auto, 2, 2, True)  # a GeoTIFF keeps its georeference
    assert should_stream(Inference(streaming="always"), 2, 2, False)
    assert not should_stream(Inference(streaming="never"), 10**5, 10**5, True)


def run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "seglab", *args], env=env, stderr=subprocess.PIPE, **kwargs
    )


@pytest.mark.slow
def test_a_killed_prediction_resumes_where_it_stopped(checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_geotiff(images / "scene.tif", 1024, 64, seed=4)
    band_rows = ["--model.inference.band_rows", "16"]  # 64 bands
    args = predict_args(checkpoint, images, tmp_path / "out", *SLIDE, *band_rows)
    proc = run_cli(args, cwd=tmp_path)
    parts = tmp_path / "out" / ".scene.tif.parts"
    deadline = time.time() + 300
    while len(list(parts.glob("band_*.ids.npy"))) < 12:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("band_*.ids.npy")))
    assert 12 <= done < 64
    capsys.readouterr()
    main(args)  # the same command
    assert f"resumed: {done} of 64 row bands were done by an earlier run" in capsys.readouterr().err
    main(predict_args(checkpoint, images, tmp_path / "whole", *SLIDE, *band_rows))
    with (
        rasterio.open(tmp_path / "out/scene.tif") as a,
        rasterio.open(tmp_path / "whole/scene.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.profile == b.profile


@pytest.mark.slow
def test_two_processes_write_the_file_of_one(checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_geotiff(images / "scene.tif", 300, 230, seed=5)
    one = predict_args(checkpoint, images, tmp_path / "one", *SLIDE, "--save_probabilities", "npy")
    main(one)
    two = predict_args(checkpoint, images, tmp_path / "two", *SLIDE, "--save_probabilities", "npy")
    two += ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = run_cli(two, cwd=tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    for name in ("scene.tif", "scene_probs.tif"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
