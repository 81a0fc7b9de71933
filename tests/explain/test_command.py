"""``seglab explain`` on a briefly trained tiny model, and the heat-map logging callback."""

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import Logger
from PIL import Image

from seglab.callbacks import ExplainImages
from seglab.cli import SeglabCLI, main
from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from seglab.models.module import SegmentationModule
from tests.conftest import TINY, user_error
from tests.data.awkward_files import save_jpeg


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    fit = main(["fit", *TINY, "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(root)])
    return fit.trainer.checkpoint_callback.last_model_path


def test_explain_writes_non_constant_heat_maps_of_the_image_size(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((45, 70, 3), np.uint8)
    image[10:30, 20:50] = 220
    image += rng.integers(0, 30, image.shape, dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "scene.png")
    # the class the briefly trained model sees in the bright square: a class it predicts nowhere
    # has a zero target, hence a constant Grad-CAM map, whatever its training run drew
    model = SegmentationModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        predicted = model((x - mean) / std).argmax(1)[0, 10:30, 20:50]
    name = model.class_names[int(predicted.flatten().mode().values)]
    written = main(
        [
            "explain",
            "--ckpt_path",
            checkpoint,
            "--image",
            str(tmp_path / "scene.png"),
            "--class",
            name,
            "--output_dir",
            str(tmp_path / "out"),
        ]
    ).written
    assert set(written) == {"gradcam", "gradcam_raw", "saliency", "saliency_raw"}
    for kind in ("gradcam", "saliency"):
        overlay = np.array(Image.open(written[kind]))
        heat = np.array(Image.open(written[f"{kind}_raw"]))
        assert overlay.shape == (45, 70, 3) and heat.shape == (45, 70)
        assert heat.std() > 0, f"{kind} map is constant"


def test_explain_names_the_bad_option(checkpoint, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["explain", "--ckpt_path", checkpoint, "--image", str(tmp_path / "a.png")]
    user_error([*args, "--class", "zebra"], capsys, 2, "--class: 'zebra'", "circle")
    layer = [*args, "--class", "circle", "--layer", "encoder.nope"]
    user_error(layer, capsys, 2, "--layer: the model has no module 'encoder.nope'")


def test_explain_treats_exif_orientation_as_training_does(checkpoint, tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    save_jpeg(rgb, tmp_path / "phone.jpg", orientation=8)  # viewers show it 64x40 (HxW)
    args = ["explain", "--ckpt_path", checkpoint, "--image", str(tmp_path / "phone.jpg")]
    args += ["--class", "circle"]
    refused = [*args, "--output_dir", str(tmp_path / "refused")]
    user_error(refused, capsys, 1, "phone.jpg: EXIF orientation 8", "data.exif_orientation")
    for setting, shape in (("apply", (64, 40)), ("ignore", (40, 64))):
        out = str(tmp_path / setting)
        command = main([*args, "--output_dir", out, "--data.exif_orientation", setting])
        assert np.array(Image.open(command.written["gradcam_raw"])).shape == shape


class ImageLogger(Logger):
    """A logger with ``log_image``, like ``WandbLogger``."""

    def __init__(self):
        super().__init__()
        self.logged = []

    name = "images"
    version = 0

    def log_image(self, key, images, step=None):
        self.logged.append((key, images, step))

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_callback_logs_heat_maps_through_log_image_every_n_epochs():
    cli = SeglabCLI(args=TINY, run=False)
    logger = ImageLogger()
    # The decoder's full-resolution features: the tiny encoder's last stage is 2x2 at 64 px, whose
    # few Grad-CAM levels can come out the same after 8 steps however the weights moved.
    callback = ExplainImages("circle", layer="decoder", num_images=2, every_n_epochs=2)
    trainer = L.Trainer(
        max_epochs=4,
        logger=logger,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(cli.model, cli.datamodule)
    assert [(key, step) for key, _, step in logger.logged] == [
        ("explain/gradcam/circle", 3),  # the steps of the validation metrics
        ("explain/gradcam/circle", 7),
    ]
    first, second = logger.logged[0][1], logger.logged[1][1]
    assert len(first) == 2 and first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
    assert not np.array_equal(first[0], second[0])  # the model changed, and so did its heat map


def test_callback_writes_png_files_for_loggers_without_images(tmp_path):
    main(
        [
            "fit",
            *TINY,
            "--trainer.max_epochs",
            "1",
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
            "--trainer.callbacks+=seglab.callbacks.ExplainImages",
            "--trainer.callbacks.class_name",
            "square",
            "--trainer.callbacks.num_images",
            "3",
        ]
    )
    files = sorted((tmp_path / "lightning_logs" / "version_0" / "explain").glob("*.png"))
    assert [f.name for f in files] == [f"gradcam_square_step000001_{i}.png" for i in range(3)]
    assert np.array(Image.open(files[0])).shape == (64, 64, 3)
