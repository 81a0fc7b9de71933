"""A user's mistake ends in one short message naming the option or file, never a traceback.

Exit status 2: a usage or configuration mistake; 1: bad data, an unusable file, a run-time problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import (
    QUICKSTART,
    TINY,
    TINY_RUN,
    tiny_folder_run,
    user_error,
    write_folder_dataset,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from seglab.cli import main

    root = tmp_path_factory.mktemp("run")
    fit = main(["fit", *TINY, "--trainer.max_steps", "1", "--trainer.default_root_dir", str(root)])
    return Path(fit.trainer.checkpoint_callback.last_model_path)


def test_a_data_root_that_does_not_exist(capsys, tmp_path):
    missing = str(tmp_path / "nowhere")
    user_error(["fit", *tiny_folder_run(Path(missing))], capsys, 2, missing)


def test_a_crop_size_of_zero(capsys):
    user_error(["fit", *TINY, "--data.init_args.crop_size", "0"], capsys, 2, "data.crop_size")


def test_a_reversed_scale_range(capsys):
    args = ["fit", *TINY, "--data.init_args.augment.scale_range", "[2.0, 0.5]"]
    user_error(args, capsys, 2, "data.augment.scale_range", "[2.0, 0.5]")


def test_a_negative_learning_rate_before_anything_is_built(capsys):
    user_error(["fit", *TINY, "--model.lr", "-0.1"], capsys, 2, "model.lr", "-0.1")


def test_a_learning_rate_that_is_not_a_number(capsys):
    user_error(["fit", *TINY, "--model.lr", "fast"], capsys, 2, "model.lr", "fast")


def test_an_unknown_option(capsys):
    user_error(["fit", *TINY, "--model.learning_rate", "0.1"], capsys, 2, "learning_rate")


def test_an_unknown_architecture(capsys):
    user_error(["fit", *TINY, "--model.arch", "unett"], capsys, 2, "model.arch", "unett")


def test_an_unknown_encoder(capsys):
    user_error(["fit", *TINY, "--model.encoder_name", "tu-nonet"], capsys, 2, "encoder_name")


def test_a_classic_architecture_setting_that_cannot_build(capsys):
    args = ["fit", *TINY, "--model.arch", "unet_original", "--model.model_kwargs", "{depth: 0}"]
    user_error(args, capsys, 2, "model.model_kwargs", "depth=0")


def test_a_callback_setting_out_of_range(capsys):
    args = ["fit", *TINY, "--trainer.callbacks+=seglab.callbacks.Throughput"]
    user_error([*args, "--trainer.callbacks.window", "0"], capsys, 2, "Throughput.window", "0")


def test_a_data_value_of_the_wrong_kind_names_the_option_and_what_it_takes(capsys):
    args = ["fit", *TINY, "--data.init_args.train_splits", "[train, nope]"]
    user_error(args, capsys, 2, "data.train_splits", "'train', 'val', 'test'", "nope")
    args = ["fit", *TINY, "--data.init_args.batch_size", "two"]
    user_error(args, capsys, 2, "data.batch_size", "int", "two")


def test_another_architectures_model_kwargs(capsys):
    """The quickstart's UNet decoder settings, kept after switching to PAN."""
    args = ["fit", *TINY_RUN, "--model.arch", "pan", "--model.model_kwargs"]
    user_error([*args, "{decoder_channels: [16, 8]}"], capsys, 2, "model.model_kwargs", "'pan'")


def test_a_trainer_setting_lightning_refuses(capsys):
    user_error(["fit", *TINY, "--trainer.strategy", "ddp_nope"], capsys, 2, "trainer:", "ddp_nope")
    user_error(["fit", *TINY, "--trainer.devices", "0"], capsys, 2, "trainer:", "devices='0'")


def test_a_negative_number_of_workers(capsys):
    args = ["fit", *TINY, "--data.init_args.num_workers", "-1"]
    user_error(args, capsys, 2, "data.num_workers", "-1")


def test_a_config_file_that_does_not_exist(capsys, tmp_path):
    user_error(["fit", "--config", str(tmp_path / "exp.yaml")], capsys, 2, "exp.yaml")


def test_zero_classes_in_check_data(capsys, tmp_path):
    root = write_folder_dataset(tmp_path / "data", {"train": 1, "val": 1})
    config = tmp_path / "exp.yaml"
    init_args = {"root": str(root), "num_classes": 0}
    config.write_text(
        yaml.safe_dump({"data": {"class_path": "seglab.FolderDataModule", "init_args": init_args}})
    )
    user_error(["check-data", "--config", str(config)], capsys, 2, "data.num_classes", "0")


def test_a_checkpoint_that_does_not_exist(capsys, tmp_path):
    missing = str(tmp_path / "gone.ckpt")
    user_error(["validate", *TINY, "--ckpt_path", missing], capsys, 2, "--ckpt_path", missing)


def test_a_truncated_checkpoint(capsys, checkpoint, tmp_path):
    truncated = tmp_path / "half.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    user_error(["validate", *TINY, "--ckpt_path", str(truncated)], capsys, 1, str(truncated))


def test_a_file_that_is_not_a_lightning_checkpoint(capsys, tmp_path):
    weights = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    user_error(["test", *TINY, "--ckpt_path", str(weights)], capsys, 1, str(weights), "Lightning")


def test_resuming_by_name_when_there_is_nothing_to_evaluate(capsys):
    user_error(["validate", *TINY, "--ckpt_path", "last"], capsys, 1, "no last.ckpt", "quickstart")


def test_a_foreign_data_module_without_classes_and_no_model_num_classes(capsys):
    args = ["fit", *TINY_RUN, "--data", "tests.foreign.ShapesDataModule"]
    user_error([*args, "--data.expose_classes", "false"], capsys, 2, "--model.num_classes")


def test_a_foreign_data_module_whose_masks_have_more_classes_than_the_model(capsys):
    args = [
        "fit",
        *TINY_RUN,
        "--data",
        "tests.foreign.ShapesDataModule",
        "--trainer.max_steps",
        "1",
    ]
    args += ["--data.expose_classes", "false", "--model.num_classes", "2"]
    user_error(args, capsys, 1, "masks are neither class ids 0..1", "model.num_classes")


def test_an_unknown_export_format_and_class_to_explain(capsys, checkpoint, tmp_path):
    export = ["export", "--ckpt_path", str(checkpoint), "--output_dir", str(tmp_path)]
    user_error([*export, "--formats", "onnx", "tflite"], capsys, 2, "formats", "tflite")
    write_folder_dataset(tmp_path / "d", {"val": 1})
    image = tmp_path / "d/val/images/img000.png"
    explain = ["explain", "--ckpt_path", str(checkpoint), "--image", str(image)]
    user_error([*explain, "--class", "zebra"], capsys, 2, "--class", "zebra", "circle")


def test_an_unknown_command(capsys):
    user_error(["train", "--config", str(QUICKSTART)], capsys, 2, "unknown command 'train'")


def test_debug_mode_keeps_the_traceback(monkeypatch):
    from seglab.cli import main
    from seglab.errors import ConfigError

    monkeypatch.setenv("SEGLAB_DEBUG", "1")
    with pytest.raises(ConfigError, match=r"model\.lr"):
        main(["fit", *TINY, "--model.lr", "-0.1"])
