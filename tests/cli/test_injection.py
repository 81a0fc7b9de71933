"""Your own loss, optimizer, schedule and network, by class path in an experiment file, as a
Lightning user reuses a module: they train, resume, evaluate, export and predict like seglab's
own."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from seglab import SegmentationModule
from seglab.cli import main
from seglab.inference.export import run_exported
from tests.conftest import QUICKSTART, TINY, TINY_RUN, user_error

HERE = "tests.cli.test_injection"  # the class path of this file, which the configs name


def made_here(obj: object, name: str) -> bool:
    """Whether ``obj`` is an instance of this file's class ``name`` (imported by its class path,
    this file is a second module object beside pytest's)."""
    return type(obj).__module__ == HERE and type(obj).__name__ == name


class SoftDiceLoss(nn.Module):
    """A user's own loss: called as ``loss(logits, mask)``, ignoring ``ignore_index`` pixels."""

    def __init__(self, smooth: float = 1.0, ignore_index: int | None = None) -> None:
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = (mask != self.ignore_index)[:, None]
        probs = logits.softmax(1) * valid
        target = nn.functional.one_hot(mask.clamp(0, logits.shape[1] - 1), logits.shape[1])
        target = target.permute(0, 3, 1, 2) * valid
        overlap = (probs * target).sum((0, 2, 3))
        total = probs.sum((0, 2, 3)) + target.sum((0, 2, 3))
        return 1 - ((2 * overlap + self.smooth) / (total + self.smooth)).mean()


class TwoStageNet(nn.Module):
    """A user's network that is not smp's: an ``encoder`` (the backbone) and a head, logits at the
    input's size."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder(x))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear")


class RecordGroups(L.Callback):
    """Every optimizer group's name, learning rate and weight decay before every training step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, tuple[float, float]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        groups = trainer.optimizers[0].param_groups
        self.steps.append({g["name"]: (g["lr"], g["weight_decay"]) for g in groups})


def recorder(cli) -> RecordGroups:
    return next(c for c in cli.trainer.callbacks if made_here(c, "RecordGroups"))


def tiny_experiment(tmp_path, model: dict) -> list[str]:
    """The tiny run of an experiment file: the quickstart with these model settings."""
    config = yaml.safe_load(QUICKSTART.read_text())
    config["model"].update(model)
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    assert TINY[:2] == ["--config", str(QUICKSTART)]
    return ["--config", str(path), *TINY[2:]]


OWN_PARTS = {
    "loss": {"class_path": f"{HERE}.SoftDiceLoss", "init_args": {"smooth": 0.5}},
    "optimizer": {"class_path": "torch.optim.RAdam", "init_args": {"betas": [0.8, 0.99]}},
    "lr_scheduler": {
        "class_path": "torch.optim.lr_scheduler.OneCycleLR",
        "init_args": {"max_lr": 0.01, "total_steps": 4},
    },
    "lr": None,
    "weight_decay": 0.01,
    "backbone_lr_mult": 0.1,
}


def test_own_loss_radam_and_one_cycle_train_keep_the_groups_and_resume(tmp_path):
    run = [
        "fit",
        *tiny_experiment(tmp_path, OWN_PARTS),
        f"--trainer.callbacks+={HERE}.RecordGroups",
    ]
    # TINY's 4 training samples in batches of 2: 2 steps per epoch; OneCycleLR over 4 steps.
    first = main([*run, "--trainer.max_epochs", "1"])
    assert made_here(first.model.criterion, "SoftDiceLoss") and first.model.criterion.smooth == 0.5
    assert first.model.criterion.ignore_index == 255  # the module's, given to the loss
    optimizer = first.trainer.optimizers[0]
    assert type(optimizer) is torch.optim.RAdam and optimizer.defaults["betas"] == (0.8, 0.99)
    resumed = main([*run, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 4
    steps = recorder(first).steps + recorder(resumed).steps
    whole = main([*run, "--trainer.max_epochs", "2", "--trainer.default_root_dir", "whole"])
    assert steps == recorder(whole).steps  # resumed: the same schedule as without a break
    assert len({groups["head"][0] for groups in steps}) == 4  # the one-cycle schedule moved
    for groups in steps:
        assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
        assert groups["backbone"][0] == pytest.approx(0.1 * groups["head"][0])  # every step
        assert groups["backbone_no_decay"][0] == pytest.approx(0.1 * groups["head"][0])
        assert groups["head"][1] == groups["backbone"][1] == 0.01
        assert groups["head_no_decay"][1] == groups["backbone_no_decay"][1] == 0.0


def test_own_network_fits_validates_sliding_with_tta_exports_and_segments_alone(tmp_path):
    network = {"class_path": f"{HERE}.TwoStageNet", "init_args": {"num_classes": 6, "width": 4}}
    tiny = tiny_experiment(tmp_path, {"network": network})
    fit = main(["fit", *tiny, "--trainer.max_steps", "2"])
    assert made_here(fit.model.model, "TwoStageNet") and fit.model.model.head.in_channels == 4
    last = fit.trainer.checkpoint_callback.last_model_path
    slide = ["--model.inference.mode", "slide", "--model.inference.tile_size", "32"]
    tta = ["--model.inference.hflip", "true", "--model.inference.scales", "[0.75, 1.0]"]
    validate = main(["validate", *tiny, "--ckpt_path", last, *slide, *tta])
    metrics = validate.trainer.callback_metrics
    assert metrics["val/tta_passes"] == 4 and 0 <= metrics["val/mIoU"] <= 1
    exported = main(
        ["export", "--ckpt_path", last, "--output_dir", "exported", "--formats", "onnx"]
    )
    module = SegmentationModule.load_from_checkpoint(last, map_location="cpu").eval()
    assert made_here(module.model, "TwoStageNet")  # rebuilt from the checkpoint alone
    image = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(
            run_exported(exported.written["onnx"], image), module(image), rtol=1e-4, atol=1e-4
        )
    photo = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    ids = module.segment(photo)
    assert ids.shape == (40, 56) and int(ids.max()) < 6


def test_the_optimizers_own_learning_rate_applies_when_the_module_has_none(tmp_path):
    run = ["fit", *TINY, "--trainer.max_steps", "1", "--model.lr_scheduler", "null"]
    run += [f"--trainer.callbacks+={HERE}.RecordGroups"]
    fit = main([*run, "--model.lr", "null", "--model.optimizer.lr", "0.02"])
    assert recorder(fit).steps[0]["head"][0] == pytest.approx(0.02)
    fit = main([*run, "--model.optimizer", "SGD", "--model.optimizer.momentum", "0.5"])
    assert recorder(fit).steps[0]["head"][0] == pytest.approx(0.003)  # the quickstart's model.lr
    assert fit.trainer.optimizers[0].defaults["momentum"] == 0.5


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--model.optimizer", "sgd", "give a class, not seglab 0.1's name 'sgd'"),
        ("--model.lr_scheduler", "poly", "model.lr_scheduler: seglab.optim.PolyLR"),
        ("--model.momentum", "0.9", "model.momentum is a setting of seglab 0.1"),
        ("--model.warmup_steps", "10", "model.lr_scheduler.init_args.warmup_steps"),
        ("--model.class_weights", "median_frequency", "seglab.losses.CrossEntropyLoss"),
        ("--model.ohem_threshold", "0.7", "OhemCrossEntropyLoss"),
    ],
)
def test_settings_of_the_old_form_say_what_to_write(option, value, fragment, capsys):
    user_error(["fit", *TINY_RUN, option, value], capsys, 2, fragment)
