"""Every classic architecture learns (overfits a tiny batch) and trains through the real CLI."""

import pytest
import torch
import torch.nn.functional as F

from seglab.cli import main
from seglab.metrics import ConfusionMatrix, scores_from_confusion
from seglab.models import SegmentationModule
from seglab.models.classic import CLASSIC_ARCHS
from tests.conftest import TINY

# arch: (image size, block size of the class pattern, model_kwargs). FCN-32s predicts from a
# stride-32 map, so its pattern is coarser: that is the point of FCN-16s and FCN-8s.
OVERFIT = {
    "fcn32s": (64, 32, {}),
    "fcn16s": (64, 16, {}),
    "fcn8s": (64, 8, {}),
    "segnet": (32, 8, {"depths": [1, 1, 1], "widths": [8, 16, 16]}),
    "unet_original": (32, 8, {"depth": 2, "base_width": 8}),
}
TINY_KWARGS = {k: v[2] for k, v in OVERFIT.items()}


def noisy_blocks(size: int, block: int, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images of square class blocks; a block's brightness is its class, under heavy noise, so a
    pixel alone is ambiguous and the network has to pool its neighbourhood."""
    g = torch.Generator().manual_seed(0)
    cells = torch.randint(0, num_classes, (2, size // block, size // block), generator=g)
    mask = cells.repeat_interleave(block, 1).repeat_interleave(block, 2)
    image = mask[:, None].float().expand(-1, 3, -1, -1) + torch.randn(2, 3, size, size, generator=g)
    return image, mask


@pytest.mark.parametrize("arch", CLASSIC_ARCHS)
def test_overfits_a_tiny_batch(arch):
    size, block, kwargs = OVERFIT[arch]
    torch.manual_seed(0)
    module = SegmentationModule(
        arch=arch, encoder_name="tu-test_resnet", num_classes=3, model_kwargs=kwargs
    )
    image, mask = noisy_blocks(size, block)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    miou = 0.0
    for step in range(300):
        module.train()
        loss = F.cross_entropy(module(image), mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            module.eval()
            with torch.no_grad():
                confmat = ConfusionMatrix(3)
                confmat.update(module(image).argmax(1), mask)
            miou = float(scores_from_confusion(confmat.compute())["mIoU"])
            if miou > 0.9:
                break
    assert miou > 0.9, f"{arch} reached mIoU {miou:.3f} after 300 steps"


@pytest.mark.parametrize("arch", CLASSIC_ARCHS)
def test_every_classic_architecture_trains_a_step_through_the_cli(arch):
    cli = main(
        [
            "fit",
            *TINY,
            "--trainer.fast_dev_run",
            "1",
            "--model.arch",
            arch,
            "--model.model_kwargs",
            str(TINY_KWARGS[arch]),
        ]
    )
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert "val/mIoU" in cli.trainer.callback_metrics
    names = {g["name"] for g in cli.trainer.optimizers[0].param_groups}
    assert {"backbone", "head"} <= names  # the encoder is the backbone group
