"""Non-finite losses, determinism, checkpoint compatibility, safe loading, secrets."""

import math

import pytest
import torch

from seglab.cli import main
from tests.conftest import (
    TINY,
    nan_from_step,
    tiny_folder_run,
    user_error,
    write_folder_dataset,
)


def test_nan_loss_stops_the_run_naming_the_step_and_files(monkeypatch, capsys):
    from seglab import SegmentationModule

    original = SegmentationModule.configure_optimizers

    def patched(self):
        nan_from_step(self, 1)
        return original(self)

    monkeypatch.setattr(SegmentationModule, "configure_optimizers", patched)
    args = ["fit", *TINY, "--trainer.max_steps", "3"]
    message = user_error(
        args, capsys, 1, "non-finite training loss", "at step 1", "synthetic/train/"
    )
    option = message.split("add ", 1)[1].split()  # the message's option switches to skipping
    cli = main([*args, *option])
    assert cli.trainer.global_step == 3
    guard = next(c for c in cli.trainer.callbacks if type(c).__name__ == "NonFiniteLoss")
    assert guard.policy == "skip" and guard.skipped == 2  # every step from step 1 on
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def test_same_seed_and_deterministic_give_identical_metrics():
    args = ["fit", *TINY, "--trainer.max_epochs", "2", "--trainer.deterministic", "true"]
    first = {k: float(v) for k, v in main(args).trainer.callback_metrics.items()}
    second = {k: float(v) for k, v in main(args).trainer.callback_metrics.items()}
    assert first.keys() == second.keys() and "val/mIoU" in first
    assert all(
        first[k] == second[k] or (math.isnan(first[k]) and math.isnan(second[k])) for k in first
    )


@pytest.fixture
def checkpoint(tmp_path):
    cli = main(
        ["fit", *TINY, "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path)]
    )
    return cli.trainer.checkpoint_callback.last_model_path


def test_checkpoint_with_other_classes_is_refused_naming_the_option(checkpoint, tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", {"train": 2, "val": 2})
    user_error(
        ["validate", *tiny_folder_run(root, "--ckpt_path", checkpoint)],
        capsys,
        2,
        "model.num_classes is 6",
        "last.ckpt",
        "FolderDataModule has num_classes 3",
    )


class Payload:
    """Anything that needs unpickling a class: what a malicious checkpoint would carry."""


def test_pickle_carrying_checkpoint_is_refused_without_opt_in(checkpoint, tmp_path, capsys):
    state = torch.load(checkpoint, weights_only=True)
    state["extra"] = Payload()
    bad = tmp_path / "bad.ckpt"
    torch.save(state, bad)
    user_error(
        ["validate", *TINY, "--ckpt_path", str(bad)], capsys, 1, "bad.ckpt", "--weights_only false"
    )
    cli = main(["validate", *TINY, "--ckpt_path", str(bad), "--weights_only", "false"])
    assert "val/mIoU" in cli.trainer.callback_metrics


def test_api_key_never_reaches_config_or_checkpoint(monkeypatch, tmp_path):
    secret = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    cli = main(
        [
            "fit",
            *TINY,
            "--trainer.max_steps",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
        ]
    )
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files) and any(p.name == "config.yaml" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert cli.trainer.global_step == 1
