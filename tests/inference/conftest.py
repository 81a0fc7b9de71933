"""A tiny trained checkpoint shared by the inference tests: one optimizer step of the TINY
config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglab.cli import main
from tests.conftest import TINY


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    fit = main(
        [
            "fit",
            *TINY,
            "--trainer.max_steps",
            "1",
            "--trainer.limit_val_batches",
            "0",
            "--trainer.default_root_dir",
            str(root),
        ]
    )
    return Path(fit.trainer.checkpoint_callback.last_model_path)


def write_images(directory: Path, sizes: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """Random RGB PNGs ``<stem>.png`` of the given (height, width)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for stem, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            directory / f"{stem}.png"
        )
    return directory
