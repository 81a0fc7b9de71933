"""Inria Aerial Image Labeling in its published layout: 0/255 building masks become classes 0/1,
tiles 1-5 of every city validate, the rest train, and the shipped experiment runs on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seglab import InriaAerialDataModule
from seglab.cli import main
from seglab.data.checks import check_data
from tests.conftest import REPO

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402  (rasterio's dependency)

EXPERIMENT = REPO / "experiments" / "inria_unet_resnet34.yaml"


def write_inria(root: Path, tiles: dict[str, list[int]], size: int = 48) -> Path:
    """``AerialImageDataset/train/{images,gt}/<city><n>.tif``: RGB uint8 GeoTIFFs and 0/255
    masks on the same grid, and one test image."""
    base = root / "AerialImageDataset"
    rng = np.random.default_rng(0)
    transform = Affine(0.3, 0, 500000, 0, -0.3, 4000000)
    common = dict(driver="GTiff", width=size, height=size, crs="EPSG:26914", transform=transform)
    names = [f"{city}{n}" for city, numbers in tiles.items() for n in numbers]
    for name in [*names, "test:bellingham1"]:
        folder, stem = ("test", name[5:]) if name.startswith("test:") else ("train", name)
        building = np.zeros((size, size), np.uint8)
        building[8:24, 10:30] = 255
        image = (rng.integers(0, 60, (3, size, size)) + (building[None] // 2)).astype(np.uint8)
        (base / folder / "images").mkdir(parents=True, exist_ok=True)
        with rasterio.open(base / folder / "images" / f"{stem}.tif", "w", count=3, dtype="uint8",
                           **common) as dst:  # fmt: skip
            dst.write(image)
        if folder == "train":
            (base / "train" / "gt").mkdir(parents=True, exist_ok=True)
            with rasterio.open(base / "train" / "gt" / f"{stem}.tif", "w", count=1,
                               dtype="uint8", **common) as dst:  # fmt: skip
                dst.write(building[None])
    return root


def test_published_layout_splits_and_building_classes(tmp_path):
    root = write_inria(tmp_path / "inria", {"austin": [1, 6, 7], "tyrol-w": [5, 12]})
    data = InriaAerialDataModule(str(root), crop_size=32, eval_window=24, num_workers=0)
    assert data.class_names == ["background", "building"]
    train, val = data.make_dataset("train"), data.make_dataset("val")
    assert sorted({p.stem for p, _ in train.pairs}) == ["austin6", "austin7", "tyrol-w12"]
    assert sorted({p.stem for p, _ in val.pairs}) == ["austin1", "tyrol-w5"]
    image, mask, name = val.read(0)
    assert image.dtype.is_floating_point is False and image.shape == (3, 24, 24)
    assert set(mask.unique().tolist()) == {0, 1} and name.endswith("austin1.tif@0,0")
    reports = check_data(data, ["train", "val", "test"], optional=("test",))
    assert not any(r.problems for r in reports.values())
    assert "masks are not published" in reports["test"].notes[0]


@pytest.mark.slow
def test_the_shipped_experiment_trains_on_the_published_layout(tmp_path):
    root = write_inria(tmp_path / "inria", {"chicago": [2, 8, 9], "vienna": [3, 30]})
    fit = main(
        [
            "fit",
            "--config",
            str(EXPERIMENT),
            "--data.init_args.root",
            str(root),
            "--trainer.logger",
            "false",
            "--trainer.accelerator",
            "cpu",
            "--trainer.precision",
            "32-true",
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--model.encoder_name",
            "tu-test_resnet",
            "--model.encoder_weights",
            "null",
            "--data.init_args.crop_size",
            "32",
            "--data.init_args.eval_window",
            "32",
            "--data.init_args.batch_size",
            "2",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.persistent_workers",
            "false",
        ]
    )
    assert fit.trainer.global_step == 2
    assert "val/IoU/building" in fit.trainer.callback_metrics
