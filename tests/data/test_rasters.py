"""Multi-band rasters read by windows (``seglab.data.rasters``, ``seglab.RasterDataModule``): a
4-band uint16 GeoTIFF dataset through the command, per-band statistics, gridded evaluation,
windowed training reads, and the refusals that name their files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from PIL import Image

from seglab import FolderDataModule, RasterDataModule
from seglab.cli import main
from seglab.data import RareClassSampling, rasters
from seglab.data.checks import check_data
from seglab.data.io import read_image_valid
from seglab.data.stats import band_statistics
from seglab.errors import DataError
from seglab.metrics import ConfusionMatrix
from tests.conftest import TINY_RUN, user_error

rasterio = pytest.importorskip("rasterio")

ORIGIN = Affine(0.5, 0, 600000, 0, -0.5, 5000000)  # 0.5 m pixels
CRS = "EPSG:32631"
NODATA = 0


def write_raster(
    path: Path,
    array: np.ndarray,
    crs: str | None = CRS,
    transform: Affine = ORIGIN,
    nodata: float | None = None,
    tiled: bool = True,
) -> Path:
    """A GeoTIFF of ``array`` ``(C, H, W)`` (tiled 16x16 blocks by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = array.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=array.dtype.name)
    profile.update(crs=crs, transform=transform, nodata=nodata, photometric="minisblack")
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def scene(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4-band uint16 image whose bands tell the 3 classes apart, its uint8 mask, and a nodata
    corner (image value 0 in every band)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, :] = 1
    mask[:, w // 2 : w // 2 + w // 5] = 2
    base = np.array([1200, 2400, 3600, 30000], np.float64)[:, None, None]
    image = base * (1 + 0.5 * mask[None]) + rng.normal(0, 50, (4, h, w))
    image = image.clip(1, 65535).astype(np.uint16)
    image[:, :5, :7] = NODATA
    return image, mask


@pytest.fixture
def raster_root(tmp_path) -> Path:
    root = tmp_path / "rasters"
    for split, sizes in (("train", [(80, 96), (72, 64)]), ("val", [(70, 90)])):
        for i, (h, w) in enumerate(sizes):
            image, mask = scene(i + (10 if split == "val" else 0), h, w)
            write_raster(root / split / "images" / f"tile{i}.tif", image, nodata=NODATA)
            write_raster(root / split / "masks" / f"tile{i}.tif", mask[None])
    return root


def raster_args(root: Path, *extra: str) -> list[str]:
    data = ["--data", "seglab.RasterDataModule", "--data.root", str(root)]
    data += ["--data.num_classes", "3", "--data.crop_size", "32", "--data.batch_size", "2"]
    data += ["--data.num_workers", "0", "--data.eval_window", "32"]
    return [*TINY_RUN, *data, *extra]


def valid_pixels(root: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each raster of a split in one piece: image (float64 / 255) and mask, nodata as 255."""
    out = []
    for path in sorted((root / split / "images").glob("*.tif")):
        with rasterio.open(path) as src:
            image = src.read().astype(np.float64)
        with rasterio.open(root / split / "masks" / path.name) as src:
            mask = src.read(1).astype(np.int64)
        mask[(image == NODATA).any(0)] = 255
        out.append((image / 255, mask))
    return out


def test_band_statistics_equal_hand_computed_ones_and_the_stats_command_prints_them(
    raster_root, capsys
):
    pieces = valid_pixels(raster_root, "train")
    values = np.concatenate([img[:, m != 255] for img, m in pieces], axis=1)
    data = RasterDataModule(str(raster_root), 3, crop_size=32, eval_window=32)
    mean, std = band_statistics(data.statistics_dataset())
    np.testing.assert_allclose(mean, values.mean(1), rtol=1e-9)
    np.testing.assert_allclose(std, values.std(1), rtol=1e-6)
    main(["stats", *raster_args(raster_root)])
    out = capsys.readouterr().out
    printed = next(line for line in out.splitlines() if line.strip().startswith("mean:"))
    assert [float(v) for v in printed.split("[")[1].rstrip("]").split(",")] == pytest.approx(
        values.mean(1), rel=1e-5
    )


@pytest.mark.slow
def test_4band_uint16_geotiffs_train_validate_and_predict_through_the_command(
    raster_root, tmp_path, capsys
):
    # without per-band statistics the data is refused, naming a file and the command to run
    user_error(
        ["fit", *raster_args(raster_root, "--trainer.fast_dev_run", "1")],
        capsys,
        2,
        "tile0.tif",
        "4 non-uint8",
        "seglab stats",
    )
    data = RasterDataModule(str(raster_root), 3, crop_size=32)
    mean, std = band_statistics(data.statistics_dataset())
    norm = ["--data.mean", str(list(mean)), "--data.std", str(list(std))]
    fit = main(
        [
            "fit",
            *raster_args(raster_root, *norm),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
        ]
    )
    assert fit.model.hparams.in_channels == 4  # follows the data
    first = next(m for m in fit.model.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 4
    assert fit.model.hparams.mean == tuple(mean)
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    val = main(["validate", *raster_args(raster_root), "--ckpt_path", ckpt])
    assert 0.0 <= float(val.trainer.callback_metrics["val/mIoU"]) <= 1.0
    out = tmp_path / "predictions"
    images = raster_root / "val" / "images"
    predict = ["predict", *raster_args(raster_root), "--ckpt_path", ckpt]
    predict += ["--data.predict_dir", str(images)]
    # georeferenced: streamed (model.inference.streaming auto) into a GeoTIFF on the input's grid
    main([*predict, "--output_dir", str(out)])
    with rasterio.open(images / "tile0.tif") as src, rasterio.open(out / "tile0.tif") as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, (70, 90))
        ids, nodata = dst.read(1), (src.read() == NODATA).all(0)
    assert (ids[nodata] == dst.nodata).all() and ids[~nodata].max() < 3
    # in memory (streaming never): a PNG and an overlay of the 4 bands
    memory = ["--model.inference.streaming", "never", "--save_overlay", "true"]
    main([*predict, "--output_dir", str(tmp_path / "memory"), *memory])
    ids = np.array(Image.open(tmp_path / "memory" / "tile0.png"))
    assert ids.shape == (70, 90) and ids.max() < 3
    assert np.array(Image.open(tmp_path / "memory" / "tile0_overlay.png")).shape == (70, 90, 3)
    explain = main(
        [
            "explain",
            "--ckpt_path",
            ckpt,
            "--image",
            str(images / "tile0.tif"),
            "--class",
            "1",
            "--output_dir",
            str(tmp_path / "explain"),
        ]
    )
    assert np.array(Image.open(explain.written["gradcam"])).shape == (70, 90, 3)


class PixelNet(torch.nn.Module):
    """A per-pixel network (a 1x1 convolution): its prediction of a pixel does not depend on the
    window the pixel is in, so gridded and whole-raster metrics must agree exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 1)
        torch.manual_seed(0)
        torch.nn.init.normal_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_metrics_over_gridded_windows_equal_those_of_the_whole_raster(raster_root):
    mean, std = (5.0, 10.0, 15.0, 120.0), (2.0, 4.0, 6.0, 40.0)
    data = RasterDataModule(str(raster_root), 3, crop_size=32, eval_window=32, mean=mean, std=std)
    net = PixelNet().eval()
    gridded = ConfusionMatrix(3, 255)
    windows = data.dataset("val")
    assert len(windows) == 3 * 3  # 70x90 in 32x32 windows, edges padded
    loader = torch.utils.data.DataLoader(windows, batch_size=2, collate_fn=None)
    with torch.no_grad():
        for batch in loader:
            gridded.update(net(batch["image"]).argmax(1), batch["mask"])
    whole = ConfusionMatrix(3, 255)
    for image, mask in valid_pixels(raster_root, "val"):
        norm = (torch.from_numpy(image).float() - torch.tensor(mean)[:, None, None]) / torch.tensor(
            std
        )[:, None, None]
        with torch.no_grad():
            whole.update(net(norm[None]).argmax(1), torch.from_numpy(mask)[None])
    assert torch.equal(gridded.compute(), whole.compute())
    assert int(whole.compute().sum()) == int((valid_pixels(raster_root, "val")[0][1] != 255).sum())


def test_a_training_window_is_read_without_decoding_the_whole_raster(tmp_path, monkeypatch):
    h, w = 2048, 2048  # 32 MiB of uint16 pixels per raster; a window is a few KiB
    image = np.full((4, h, w), 1000, np.uint16)
    write_raster(tmp_path / "big" / "train" / "images" / "big.tif", image)
    write_raster(tmp_path / "big" / "train" / "masks" / "big.tif", np.ones((1, h, w), np.uint8))
    read = []
    real = rasters.read_window

    def counting(src, window=None, bands=None):
        out = real(src, window, bands)
        read.append(out[0].shape[-2] * out[0].shape[-1])
        return out

    monkeypatch.setattr("seglab.data.datasets.raster.read_window", counting)
    data = RasterDataModule(
        str(tmp_path / "big"), 2, crop_size=32, mean=(1.0,) * 4, std=(1.0,) * 4, num_workers=0
    )
    sample = data.train_dataset()[7]
    assert sample["image"].shape == (4, 32, 32) and sample["mask"].shape == (32, 32)
    region = data.training_region()
    assert max(read) <= (2 * region[0]) * (2 * region[1]) < h * w / 100
    # the regions cover the raster: every cell one sample
    assert len(data.train_dataset()) == -(-h // region[0]) * -(-w // region[1])


def test_rare_class_sampling_and_the_decoded_cache_work_on_raster_regions(raster_root, tmp_path):
    mean, std = (5.0, 10.0, 15.0, 120.0), (2.0, 4.0, 6.0, 40.0)
    kwargs = dict(crop_size=32, eval_window=32, mean=mean, std=std, num_workers=0, batch_size=2)
    plain = RasterDataModule(str(raster_root), 3, **kwargs)
    cached = RasterDataModule(
        str(raster_root),
        3,
        cache_dir=str(tmp_path / "cache"),
        rare_class_sampling=RareClassSampling(temperature=0.1),
        **kwargs,
    )
    for split in ("train",):
        a, b = plain.training_source(split), cached.training_source(split)
        assert len(a) == len(b)
        for i in range(len(a)):
            (ia, ma, _), (ib, mb, _) = a.read(i), b.read(i)
            assert torch.equal(ia, ib) and torch.equal(ma, mb) and ia.dtype == torch.float32
    assert torch.equal(plain.source("val").read(4)[0], cached.source("val").read(4)[0])
    loader = cached.train_dataloader()
    assert loader.sampler.weights.shape == (len(cached.training_source("train")),)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 4, 32, 32)


def test_a_float_image_read_whole_keeps_its_nodata_as_invalid(tmp_path):
    array = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    array[:, 0, 0] = -9999
    array[1, 1, 1] = np.nan
    path = write_raster(tmp_path / "sar.tif", array, nodata=-9999, tiled=False)
    image, valid = read_image_valid(path)
    assert image.dtype == torch.float32 and image.shape == (2, 8, 8)
    assert not valid[0, 0] and not valid[1, 1] and int(valid.sum()) == 62
    assert image[0, 0, 0] == 0 and image[0, 2, 2] == array[0, 2, 2]


def refusal_root(tmp_path: Path) -> Path:
    """A train split with one problem of every kind the checks know, each in its own pair."""
    root = tmp_path / "bad"
    image, mask = scene(0, 32, 32)
    pairs = {
        "ok": (image, mask, {}),
        "crs": (image, mask, {"mask_crs": "EPSG:4326"}),
        "shift": (image, mask, {"mask_transform": ORIGIN * Affine.translation(3, 0)}),
        "res": (image, mask, {"mask_transform": ORIGIN * Affine.scale(2)}),
        "size": (image, mask[:30], {}),
        "zbands": (image[:3], mask, {}),
        "float": (image, mask.astype(np.float32), {}),
    }
    for name, (img, msk, how) in pairs.items():
        write_raster(root / "train" / "images" / f"{name}.tif", img, nodata=NODATA)
        write_raster(
            root / "train" / "masks" / f"{name}.tif",
            msk[None],
            crs=how.get("mask_crs", CRS),
            transform=how.get("mask_transform", ORIGIN),
        )
    return root


def test_every_refused_case_is_named_with_its_files_all_at_once(tmp_path):
    root = refusal_root(tmp_path)
    data = RasterDataModule(str(root), 3, crop_size=32)
    problems = check_data(data, ["train"])["train"].problems
    images, masks = root / "train" / "images", root / "train" / "masks"

    def one(*fragments: str) -> str:
        found = [p for p in problems if all(f in p for f in fragments)]
        assert len(found) == 1, (fragments, problems)
        return found[0]

    one(f"image {images}/crs.tif and mask {masks}/crs.tif", "CRS", "EPSG:4326")
    one(f"image {images}/shift.tif and mask {masks}/shift.tif", "transform")
    one(f"image {images}/res.tif and mask {masks}/res.tif", "resolution")
    one(f"image {images}/size.tif and mask {masks}/size.tif", "size", "32x32 and 30x32")
    one(f"{images}/zbands.tif: image has 3 bands", "crs.tif has 4 bands", "same bands")
    one(f"{masks}/float.tif: mask has pixel type float32")
    assert len(problems) == 6 and all("\n" not in p for p in problems)


def test_check_data_reports_band_values_outside_the_valid_range_per_file_and_band(tmp_path):
    root = tmp_path / "range"
    for name, top in (("fine", 9000), ("hot", 20000)):
        image, mask = scene(0, 40, 40)
        image[2, 20:, :] = top
        write_raster(root / "train" / "images" / f"{name}.tif", image, nodata=NODATA)
        write_raster(root / "train" / "masks" / f"{name}.tif", mask[None])
    valid_range = [(0, 10000), (0, 10000), (0, 10000), (0, 65535)]
    data = RasterDataModule(str(root), 3, crop_size=16, valid_range=valid_range)
    problems = check_data(data, ["train"])["train"].problems
    assert len(problems) == 1, problems
    assert re.fullmatch(
        rf"{root}/train/images/hot\.tif: band 3 has labelled values from \d+ to 20000, outside "
        r"data\.valid_range \[0, 10000\]",
        problems[0],
    )


def test_folder_datasets_take_multiband_tiffs_with_differing_bands_reported(tmp_path):
    """The folder layout reads multi-band TIFFs as stored too; check-data names an image whose
    bands differ from the others' (through the band statistics' check)."""
    root = tmp_path / "folder"
    for i, bands in enumerate((4, 4, 3)):
        image, mask = scene(i, 24, 24)
        write_raster(root / "train" / "images" / f"{i}.tif", image[:bands], nodata=NODATA)
        (root / "train" / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "train" / "masks" / f"{i}.png")
    data = FolderDataModule(str(root), 3, mean=(1.0,) * 4, std=(1.0,) * 4)
    with pytest.raises(DataError, match=r"2\.tif: image has 3 float32 bands but .*0\.tif has 4"):
        band_statistics(data.statistics_dataset())
    image, mask, _ = data.source("train").read(0)
    assert image.shape == (4, 24, 24) and (mask[:5, :7] == 255).all()


def test_without_rasterio_tifffile_reads_multiband_tiffs_with_gdal_nodata(tmp_path, monkeypatch):
    import tifffile

    array = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5) + 100
    array[:, 2, 3] = 7  # GDAL_NODATA in every band
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, array, photometric="minisblack", extratags=[(42113, "s", 0, "7", True)])
    monkeypatch.setattr("seglab.data.io.have_rasterio", lambda: False)
    image, valid = read_image_valid(path)
    assert image.dtype == torch.float32 and image.shape == (4, 6, 5)
    assert not valid[2, 3] and int(valid.sum()) == 29
    assert torch.equal(image[:, 0, 0], torch.from_numpy(array[:, 0, 0].astype(np.float32)))
