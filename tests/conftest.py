"""Shared fixtures: tiny generated datasets and a helper to run the real CLI in-process."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"

# A tiny, fast variant of the quickstart: a 2.3 M-parameter timm test encoder, 64 px images.
# TINY_RUN holds the trainer and model part, for tests that swap in another data module.
# fmt: off
TINY_RUN = [
    "--config", str(QUICKSTART),
    "--trainer.logger", "false",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--model.encoder_name", "tu-test_resnet",
    "--model.model_kwargs", "{}",
]
TINY = [
    *TINY_RUN,
    "--data.init_args.image_size", "64",
    "--data.init_args.crop_size", "64",
    "--data.init_args.num_train", "4",
    "--data.init_args.num_val", "3",
    "--data.init_args.num_test", "3",
    "--data.init_args.batch_size", "2",
    "--data.init_args.num_workers", "0",
]
# fmt: on


def tiny_folder_run(root: Path, *extra: str) -> list[str]:
    """The tiny run's trainer and model on a folder dataset of 3 classes at ``root``."""
    folder = ["--data", "seglab.FolderDataModule", "--data.root", str(root)]
    return [*TINY_RUN, *folder, "--data.num_classes", "3", "--data.num_workers", "0", *extra]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``cuda`` tests are skipped where no CUDA device is (CI): they run on a lent GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (bench/gpu_check.sh runs it on a GPU)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Every test writes its logs, checkpoints and W&B files under its own temporary directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")


def nan_from_step(module, step: int) -> None:
    """Makes a SegmentationModule's training loss NaN from the given optimizer step on."""
    criterion = module.criterion.forward

    def forward(logits, target):
        loss = criterion(logits, target)
        return loss * math.nan if module.global_step >= step else loss

    module.criterion.forward = forward


def user_error(args: list[str], capsys, code: int, *fragments: str) -> str:
    """Runs the ``seglab`` command expecting a user's mistake: exit status ``code``, no traceback,
    one short message (at most three lines) that contains every fragment. Returns the message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == code, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    first = next(i for i, line in enumerate(lines) if ": error: " in line)
    message = "\n".join(lines[first:])
    assert len(lines) - first <= 3, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def write_folder_dataset(
    root: Path,
    splits: dict[str, int],
    num_classes: int = 3,
    size: tuple[int, int] = (40, 48),
    image_ext: str = ".png",
    seed: int = 0,
) -> Path:
    """``root/{split}/images/*.png|jpg`` and ``root/{split}/masks/*.png``: blocks of classes, the
    image brightness encoding the class, a border of ignore (255) pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, count in splits.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mask = (
                rng.integers(0, num_classes, (h // 8 + 1, w // 8 + 1))
                .repeat(8, 0)
                .repeat(8, 1)[:h, :w]
            )
            mask[0, :] = 255
            image = np.stack(
                [mask * 60 % 256, 255 - mask * 40 % 256, rng.integers(0, 255, (h, w))], axis=-1
            )
            Image.fromarray(image.astype(np.uint8)).save(
                root / split / "images" / f"img{i:03d}{image_ext}"
            )
            Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"img{i:03d}.png")
    return root
