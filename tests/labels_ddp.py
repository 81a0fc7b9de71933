"""Someone else's training script whose data has a label the model lacks in one sample, which only
the second of two DDP processes (CPU, gloo) sees, and never at a step where the labels are checked.

    python tests/labels_ddp.py

Both processes must stop with seglab's DataError (none may wait for the other forever).
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from seglab import SegmentationModule


class OddStepsData(L.LightningDataModule):
    """Eight samples in a fixed order: the second process trains on samples 1, 3, 5 and 7, so the
    bad sample 7 comes at its odd steps, while the labels are checked at steps 0 and 50."""

    def train_dataloader(self) -> DataLoader:
        torch.manual_seed(0)
        images = torch.randn(8, 3, 32, 32)
        masks = torch.randint(0, 3, (8, 32, 32))
        masks[7, 0, :5] = 9
        dataset = TensorDataset(images, masks)
        return DataLoader(dataset, batch_size=2, sampler=DistributedSampler(dataset, shuffle=False))


def main() -> None:
    torch.manual_seed(0)
    module = SegmentationModule(arch="unet", encoder_name="tu-test_resnet", num_classes=3)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=51,
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, OddStepsData())


if __name__ == "__main__":
    main()
