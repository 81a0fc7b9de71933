"""Prediction overlays and per-class reports with loggers other than W&B: CSV files, TensorBoard."""

from __future__ import annotations

import csv

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seglab import FolderDataModule
from seglab.callbacks import (
    BestModelArtifact,
    ClassMetricsReport,
    ExplainImages,
    PredictionImages,
)
from seglab.callbacks.images import class_palette, color_overlay, to_uint8
from seglab.cli import SeglabCLI
from seglab.data.batch import unpack_batch
from seglab.inference import predict_logits
from seglab.models import SegmentationModule
from tests.conftest import TINY, write_folder_dataset


def test_overlay_colours_classes_and_leaves_ignored_pixels_alone():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[0, 1], [1, 255]])
    palette = np.array([[0, 0, 0], [200, 0, 0]], np.uint8)
    out = color_overlay(image, mask, palette, alpha=0.5)
    assert out[0, 1].tolist() == [150, 50, 50] and out[0, 0].tolist() == [50, 50, 50]
    assert out[1, 1].tolist() == [100, 100, 100]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"PredictionImages\.alpha"):
        PredictionImages(alpha=2.0)
    with pytest.raises(ValueError, match="every_n_epochs"):
        PredictionImages(every_n_epochs=0)


def test_csv_gets_png_panels_and_tensorboard_gets_images_and_tables(tmp_path):
    cli = SeglabCLI(args=TINY, run=False)
    csv_logger = CSVLogger(tmp_path, name="csv")
    tb_logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = L.Trainer(
        max_epochs=2,
        logger=[csv_logger, tb_logger],
        callbacks=[
            PredictionImages(num_images=2, every_n_epochs=2),
            ClassMetricsReport(),
            BestModelArtifact(),  # no W&B logger: does nothing
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(cli.model, cli.datamodule)

    # CSV: panels image | ground truth | prediction, only at epoch 2, at the step of that
    # validation's metrics (Lightning logs them at the step before the 4th optimizer step's), same
    # 2 images
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("val/mIoU")]
    assert steps == [1, 3]
    files = sorted((tmp_path / "csv" / "version_0" / "predictions").glob("*.png"))
    assert [f.name for f in files] == ["val_step000003_0.png", "val_step000003_1.png"]
    panel = np.array(Image.open(files[0]))
    assert panel.shape == (64, 3 * 64, 3)
    assert not np.array_equal(panel[:, 64:128], panel[:, 128:])  # truth and prediction differ
    # The first validation image as uint8, then the same image coloured by its mask and by the
    # prediction of the model (the same after the last validation: fit ends there).
    image, mask, _ = unpack_batch(next(iter(cli.datamodule.val_dataloader())))
    model = cli.model.eval()
    with torch.no_grad():
        settings = getattr(model, "inference", None)  # as the callback reads them
        prediction = predict_logits(model, image[:1], settings).argmax(1)[0].numpy()
    palette = class_palette(cli.datamodule, model, len(model.class_names))
    photo = to_uint8(image[0], cli.datamodule)
    assert np.array_equal(panel[:, :64], photo)
    assert np.array_equal(panel[:, 64:128], color_overlay(photo, mask[0].numpy(), palette))
    assert np.array_equal(panel[:, 128:], color_overlay(photo, prediction, palette))

    # per-class CSV of every epoch: one row per class, IoU equal to the logged metric
    report = tmp_path / "csv" / "version_0" / "per_class"
    with open(report / "val_epoch001.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == cli.model.class_names
    circle = next(r for r in rows if r["class"] == "circle")
    expected = float(trainer.callback_metrics["val/IoU/circle"])
    assert circle["IoU"] != "" and float(circle["IoU"]) == pytest.approx(expected, abs=1e-6)
    with open(report / "val_confusion_epoch001.csv") as f:
        counts = [list(map(int, row[1:])) for row in list(csv.reader(f))[1:]]
    assert np.array(counts).sum() == int(cli.model.last_confusion["val"].sum()) > 0

    # TensorBoard: add_image panels and the per-class table as text
    events = EventAccumulator(str(tb_logger.log_dir), size_guidance={"images": 0}).Reload()
    assert sorted(events.Tags()["images"]) == ["predictions/val/0", "predictions/val/1"]
    (image,) = events.Images("predictions/val/0")
    assert image.step == 3 and (image.height, image.width) == (64, 3 * 64)
    assert "val/per_class/text_summary" in events.Tags()["tensors"]


def test_images_of_different_sizes_are_predicted_and_explained_one_by_one(tmp_path):
    # Pets, VOC and ADE20K images differ in size and are evaluated one at a time (batch size 1).

    root = write_folder_dataset(tmp_path / "data", {"train": 4, "val": 1}, size=(40, 48))
    other = write_folder_dataset(tmp_path / "other", {"val": 1}, size=(56, 32), seed=1)
    for kind in ("images", "masks"):
        (other / "val" / kind / "img000.png").rename(root / "val" / kind / "img001.png")
    datamodule = FolderDataModule(
        str(root), num_classes=3, crop_size=32, batch_size=2, eval_batch_size=1, num_workers=0
    )
    model = SegmentationModule(encoder_name="tu-test_resnet", num_classes=3, encoder_weights=None)
    model.class_names = datamodule.class_names
    trainer = L.Trainer(
        max_epochs=1,
        logger=CSVLogger(tmp_path, name="csv"),
        callbacks=[
            PredictionImages(num_images=2),
            ExplainImages(class_name=datamodule.class_names[1], num_images=2),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule)

    log_dir = tmp_path / "csv" / "version_0"
    panels = sorted((log_dir / "predictions").glob("*.png"))
    assert [np.array(Image.open(p)).shape for p in panels] == [(40, 3 * 48, 3), (56, 3 * 32, 3)]
    heat_maps = sorted((log_dir / "explain").glob("*.png"))
    assert [np.array(Image.open(p)).shape[:2] for p in heat_maps] == [(40, 48), (56, 32)]
