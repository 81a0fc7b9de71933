"""Someone else's evaluation script: a plain Trainer validates and tests ``SegmentationModule`` on
their own data module with ``DEVICES`` CPU processes and writes the metrics of rank 0 to ``OUT``.

    python tests/foreign_ddp.py DEVICES NUM_VAL OUT.json

Lightning starts the extra processes by running this script again (ddp on the CPU, gloo).
"""

from __future__ import annotations

import json
import sys

import lightning as L
import torch

from seglab import SegmentationModule
from tests.foreign import ShapesDataModule


def main(devices: int, num_val: int, out: str) -> None:
    torch.manual_seed(0)  # the same untrained model in every process: every sample matters
    module = SegmentationModule(arch="unet", encoder_name="tu-test_resnet", num_classes=3)
    data = ShapesDataModule(num_val=num_val, batch_size=2, size=32)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    metrics = {**trainer.validate(module, data, verbose=False)[0]}
    metrics.update(trainer.test(module, data, verbose=False)[0])
    if trainer.global_rank == 0:
        with open(out, "w") as f:
            json.dump(metrics, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
