"""``--data`` takes any LightningDataModule by class path, not only seglab's."""

from __future__ import annotations

from seglab.cli import main
from tests.conftest import TINY_RUN, user_error

# fmt: off
FOREIGN = [
    *TINY_RUN, "--trainer.max_epochs", "1",
    "--data", "tests.foreign.ShapesDataModule", "--data.num_train", "8", "--data.batch_size", "2",
]
# fmt: on


def test_a_foreign_data_module_trains_and_validates_with_its_classes_linked():
    cli = main(["fit", *FOREIGN])
    assert cli.trainer.global_step == 4  # 8 samples, batches of 2
    assert cli.model.hparams.num_classes == 3
    assert cli.model.class_names == ["c0", "c1", "c2"]
    assert 0.0 <= float(cli.trainer.callback_metrics["val/mIoU"]) <= 1.0
    assert "val/IoU/c1" in cli.trainer.callback_metrics


def test_without_class_attributes_the_model_options_say_the_classes():
    args = ["fit", *FOREIGN, "--data.expose_classes", "false", "--model.num_classes", "3"]
    cli = main(args)
    assert cli.model.hparams.num_classes == 3 and cli.trainer.global_step == 4
    assert "val/mIoU" in cli.trainer.callback_metrics


def test_classes_set_on_both_sides_must_agree(capsys):
    message = user_error(["fit", *FOREIGN, "--model.num_classes", "4"], capsys, 2)
    assert "model.num_classes is 4" in message and "ShapesDataModule has num_classes 3" in message
