"""The real ``seglab`` CLI, run in-process."""

import pytest
import torch
import yaml

from seglab.cli import main
from seglab.losses import OhemCrossEntropyLoss
from seglab.models.factory import SMP_ARCHS
from tests.conftest import TINY, user_error


@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_every_smp_architecture_trains_a_step_through_the_cli(arch):
    size = "128" if arch == "pan" else "64"  # PAN's pyramid pooling needs at least 128 px
    cli = main(
        [
            "fit",
            *TINY,
            "--trainer.fast_dev_run",
            "1",
            "--model.arch",
            arch,
            "--data.init_args.image_size",
            size,
            "--data.init_args.crop_size",
            size,
        ]
    )
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert "val/mIoU" in cli.trainer.callback_metrics


def test_fit_validate_test_predict_share_one_checkpoint(tmp_path, capsys):
    fit = main(
        [
            "fit",
            *TINY,
            "--trainer.max_epochs",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "Best validation metrics" in out and "val/IoU/circle" in out
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    assert ckpt and fit.trainer.global_step == 4

    val = main(["validate", *TINY, "--ckpt_path", ckpt])
    metrics = val.trainer.callback_metrics
    assert set(metrics) >= {"val/mIoU", "val/dice", "val/acc", "val/loss", "val/IoU/background"}
    assert 0.0 <= float(metrics["val/mIoU"]) <= 1.0

    test = main(["test", *TINY, "--ckpt_path", ckpt])
    assert "test/mIoU" in test.trainer.callback_metrics

    predict = main(["predict", *TINY, "--ckpt_path", ckpt])
    preds = predict.trainer.predict_loop.predictions
    assert torch.cat(preds).shape == (3, 64, 64)


def test_num_classes_and_class_names_are_linked_from_the_data(tmp_path):
    cli = main(["fit", *TINY, "--trainer.fast_dev_run", "1"])
    assert cli.model.hparams.num_classes == 6
    assert cli.model.class_names[1] == "circle"


def test_ignore_index_is_set_once_on_the_model():
    cli = main(["fit", *TINY, "--trainer.fast_dev_run", "1", "--model.ignore_index", "100"])
    assert cli.datamodule.ignore_index == 100 and cli.model.hparams.ignore_index == 100


def test_closed_choices_are_validated_by_the_parser(capsys):
    user_error(["fit", *TINY, "--model.arch", "unett"], capsys, 2, "model.arch", "unett", "fpn")


def test_print_config_resolves_the_quickstart_with_its_injected_parts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["class_path"] == "seglab.SyntheticDataModule"
    model = config["model"]
    assert model["encoder_name"] == "tu-test_resnet" and model["backbone_lr_mult"] == 1.0
    assert model["loss"] == {"ce": 1.0, "dice": 0.5}
    assert model["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert model["lr_scheduler"] == {
        "class_path": "seglab.PolyLR",  # jsonargparse's shortest import path
        "init_args": {
            "power": 0.9,
            "total_steps": None,
            "warmup_steps": 50,
            "warmup_ratio": None,
            "min_lr_ratio": 0.0,
            "last_epoch": -1,
        },
    }


def test_settings_an_older_checkpoint_has_and_this_version_lacks_are_named(tmp_path, capsys):
    """A checkpoint of seglab 0.1 (optimizer and schedule by name, their options on the model, the
    freezing policy before it became a callback) still evaluates, and the run says which of its
    settings no longer apply, and where they went, instead of dropping them silently."""
    fit = main(
        ["fit", *TINY, "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path)]
    )
    old = torch.load(fit.trainer.checkpoint_callback.last_model_path, weights_only=True)
    hparams = old["hyper_parameters"]
    del hparams["lr_scheduler"], hparams["_instantiator"]
    hparams.update(optimizer="adamw", scheduler="poly", warmup_steps=50, freeze_encoder_epochs=2)
    torch.save(old, tmp_path / "old.ckpt")
    capsys.readouterr()
    val = main(["validate", *TINY, "--ckpt_path", str(tmp_path / "old.ckpt")])
    assert "val/mIoU" in val.trainer.callback_metrics
    err = capsys.readouterr().err
    assert "no longer takes, left out: optimizer='adamw' (now a class" in err
    assert "scheduler='poly' (now model.lr_scheduler: {class_path: seglab.optim.PolyLR}" in err
    assert "warmup_steps=50 (now model.lr_scheduler.init_args.warmup_steps" in err
    assert "freeze_encoder_epochs=2" in err


def test_model_settings_the_checkpoint_replaces_are_named(tmp_path, capsys):
    """Evaluating a checkpoint with a config whose model differs: the checkpoint's model is used
    (it is the trained one), and the run says which configured settings it replaced."""
    fit = main(
        ["fit", *TINY, "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path)]
    )
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    capsys.readouterr()
    main(["validate", *TINY, "--ckpt_path", ckpt, "--model.lr", "0.5"])
    assert "replace the configured ones: lr 0.5 -> 0.003" in capsys.readouterr().err
    main(["validate", *TINY, "--ckpt_path", ckpt])
    assert "replace the configured" not in capsys.readouterr().err


def test_a_checkpoints_loss_and_model_kwargs_replace_the_configured_ones_whole(tmp_path):
    """The quickstart configures the loss {ce, dice} and model_kwargs {encoder_depth: 4, ...}; a
    checkpoint trained with another loss class and no model_kwargs is evaluated with the
    checkpoint's, not with a mix of both (which would build another network)."""
    ohem = ["--model.loss", "seglab.losses.OhemCrossEntropyLoss", "--model.loss.threshold", "0.8"]
    fit = main(["fit", *TINY, *ohem, "--trainer.max_steps", "1"])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    i = TINY.index("--model.model_kwargs")
    quickstart_kwargs = TINY[:i] + TINY[i + 2 :]  # the quickstart's own model_kwargs configured
    val = main(["validate", *quickstart_kwargs, "--ckpt_path", ckpt])
    assert type(val.model.criterion) is OhemCrossEntropyLoss
    assert val.model.criterion.threshold == 0.8 and val.model.hparams.model_kwargs == {}
    assert "val/mIoU" in val.trainer.callback_metrics
