"""Each classic experiment YAML trains one step on a miniature copy of its dataset."""

from functools import partial

import pytest
import torch

from tests.data.datasets.fixtures import fast_dev_run, write_camvid, write_pets, write_voc

TINY_MODELS = {
    "fcn": ["--model.encoder_name", "test_resnet"],
    "camvid_segnet": ["--model.model_kwargs", "{depths: [1, 1, 1, 1, 1], widths: [4, 4, 8, 8, 8]}"],
    "camvid_unet_original": ["--model.model_kwargs", "{depth: 2, base_width: 4}"],
}


@pytest.mark.parametrize(
    ("experiment", "writer"),
    [
        ("voc_fcn32s", partial(write_voc, sbd=4)),  # the recipe trains on SBD
        ("voc_fcn16s", partial(write_voc, sbd=4)),
        ("pets_fcn8s", write_pets),
        ("camvid_segnet", write_camvid),
        ("camvid_unet_original", write_camvid),
    ],
)
def test_classic_experiment_trains_a_step(experiment, writer, tmp_path):
    root = writer(tmp_path / "data")
    overrides = TINY_MODELS.get(experiment, TINY_MODELS["fcn"])
    cli = fast_dev_run(experiment, root, *overrides)
    assert cli.model.hparams.arch == experiment.split("_", 1)[1]
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
