"""Images per second and the share of time spent waiting for data, in every run's logs."""

import csv
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seglab.callbacks import Throughput
from seglab.cli import main
from tests.conftest import TINY

BATCH = 4
STEP_SECONDS = 0.02  # the model's "compute" per step


class SlowData(Dataset):
    """Images that take ``seconds`` per batch to load."""

    def __init__(self, batches: int, seconds: float) -> None:
        self.n, self.seconds = batches * BATCH, seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(self.seconds / BATCH)
        return torch.zeros(3, 8, 8)


class SleepyModel(L.LightningModule):
    """A step that takes a known time, so the test does not depend on the machine's speed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def training_step(self, batch, batch_idx):
        time.sleep(STEP_SECONDS)
        return self.conv(batch).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path: Path, data_seconds: float, batches: int = 6, window: int = 3) -> list[dict]:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=CSVLogger(tmp_path),
        callbacks=[Throughput(window=window)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(SlowData(batches, data_seconds), batch_size=BATCH)
    trainer.fit(SleepyModel(), loader)
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("perf/images_per_sec")]


def test_slow_data_loader_shows_as_a_high_data_wait_fraction(tmp_path):
    # 0.4 s loading vs 0.02 s compute (and Lightning's per-step work, slow on a busy machine)
    rows = _fit(tmp_path, data_seconds=0.4)
    assert len(rows) == 2  # 6 batches, a window of 3
    for row in rows:
        assert float(row["perf/data_wait_fraction"]) > 0.5
        # at most 3 batches per 2 loadings (the first window starts once the first batch has
        # arrived, later ones wait for all 3); no lower bound: a busy machine only slows it down
        images_per_sec = float(row["perf/images_per_sec"])
        assert 0 < images_per_sec < 3 * BATCH / (2 * 0.4)


def test_fast_data_loader_shows_as_a_low_data_wait_fraction(tmp_path):
    rows = _fit(tmp_path, data_seconds=0.0)
    assert len(rows) == 2
    for row in rows:
        assert float(row["perf/data_wait_fraction"]) < 0.3
        images_per_sec = float(row["perf/images_per_sec"])
        assert 0 < images_per_sec < BATCH / STEP_SECONDS
        assert float(row["perf/images_per_sec_per_device"]) == images_per_sec  # one process


def test_a_window_cut_short_by_the_epoch_end_is_logged(tmp_path):
    rows = _fit(tmp_path, data_seconds=0.0, batches=4, window=3)
    assert len(rows) == 2  # 3 batches, then the last one alone


def test_window_must_be_positive():
    with pytest.raises(ValueError, match=r"Throughput\.window"):
        Throughput(window=0)


def test_seglab_fit_logs_throughput_by_default(tmp_path):
    cli = main(
        [
            "fit",
            *TINY,
            "--trainer.max_epochs",
            "1",
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
        ]
    )
    assert any(isinstance(callback, Throughput) for callback in cli.trainer.callbacks)
    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("perf/images_per_sec")]
    assert rows and all(float(row["perf/images_per_sec"]) > 0 for row in rows)
