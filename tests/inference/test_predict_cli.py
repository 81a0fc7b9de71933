"""``seglab predict --data.predict_dir DIR --output_dir OUT``: one class-id PNG per image, any
size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from seglab.cli import main
from seglab.data.batch import unpack_batch
from seglab.data.io import DataError
from seglab.inference import Inference, predict_logits
from seglab.inference.writer import PredictionWriter
from tests.conftest import TINY, user_error
from tests.data.awkward_files import save_jpeg
from tests.inference.conftest import write_images


def predict_args(checkpoint, source, output_dir, *extra: str) -> list[str]:
    return [
        "predict",
        *TINY,
        "--ckpt_path",
        str(checkpoint),
        "--data.predict_dir",
        str(source),
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def predict(checkpoint, source, output_dir, *extra: str):
    return main(predict_args(checkpoint, source, output_dir, *extra))


def test_predict_writes_masks_of_exactly_the_input_sizes(checkpoint, tmp_path):
    sizes = {"street": (360, 480), "odd": (45, 67), "tall": (70, 33)}  # none a multiple of 32
    images = write_images(tmp_path / "images", sizes)
    out = tmp_path / "out"
    cli = predict(
        checkpoint,
        images,
        out,
        "--save_color",
        "true",
        "--save_overlay",
        "true",
        "--save_probabilities",
        "npy",
    )
    assert cli.trainer.predict_loop.predictions == []  # written per batch, not kept in memory
    for stem, (h, w) in sizes.items():
        ids = np.array(Image.open(out / f"{stem}.png"))
        assert ids.shape == (h, w) and ids.max() < 6
        color = Image.open(out / f"{stem}_color.png")
        assert color.mode == "P" and color.size == (w, h)
        assert np.array_equal(np.array(color), ids)
        assert np.array(Image.open(out / f"{stem}_overlay.png")).shape == (h, w, 3)
        probs = np.load(out / f"{stem}_probs.npy").astype(np.float32)
        assert probs.shape == (6, h, w)
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-2)
        assert (probs.argmax(0) == ids).mean() > 0.99  # float16 ties aside


def test_sliding_window_with_tta_predicts_from_a_list_file(checkpoint, tmp_path):
    write_images(tmp_path / "images", {"a": (45, 67), "b": (50, 40), "c": (40, 40)})
    (tmp_path / "images" / "list.txt").write_text("b\na.png\n")  # stems or file names
    out = tmp_path / "out"
    cli = predict(
        checkpoint,
        tmp_path / "images" / "list.txt",
        out,
        "--model.inference.mode",
        "slide",
        "--model.inference.tile_size",
        "32",
        "--model.inference.hflip",
        "true",
        "--save_probabilities",
        "pt",
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_probs.pt", "b.png", "b_probs.pt"]
    assert np.array(Image.open(out / "a.png")).shape == (45, 67)
    # The written probabilities are the sliding window's with TTA, on the images as the data
    # module gives them to the model; not those of one pass over the whole image.
    settings = Inference(mode="slide", tile_size=32, hflip=True)
    model, datamodule = cli.model.eval(), cli.datamodule
    stems = []
    for batch in datamodule.predict_dataloader():
        image, _, (name,) = unpack_batch(datamodule.on_after_batch_transfer(batch, 0))
        stems.append(Path(name).stem)
        written = torch.load(out / f"{stems[-1]}_probs.pt").float()[None]
        with torch.no_grad():
            expected = predict_logits(model, image, settings).softmax(1)
            whole = model(image).softmax(1)
        torch.testing.assert_close(written, expected, atol=2e-3, rtol=0)  # float16 in the file
        assert not torch.allclose(written, whole, atol=2e-2)
    assert stems == ["b", "a"]


def test_existing_outputs_are_refused_unless_overwrite(checkpoint, tmp_path):
    images = write_images(tmp_path / "images", {"x": (45, 67)})
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"old")
    with pytest.raises(FileExistsError, match=r"x\.png.*--overwrite true"):
        predict(checkpoint, images, out)
    assert (out / "x.png").read_bytes() == b"old"
    predict(checkpoint, images, out, "--overwrite", "true")
    assert np.array(Image.open(out / "x.png")).shape == (45, 67)


def test_a_listed_image_that_does_not_exist_is_named(checkpoint, tmp_path, capsys):
    write_images(tmp_path / "images", {"a": (45, 67)})
    (tmp_path / "images" / "list.txt").write_text("a\nghost\n")
    with pytest.raises(SystemExit):
        predict(checkpoint, tmp_path / "images" / "list.txt", tmp_path / "out")
    assert "list.txt:2: no image file for 'ghost'" in capsys.readouterr().err


def test_validate_logs_tta_passes_with_sliding_window_metrics(checkpoint):
    cli = main(
        [
            "validate",
            *TINY,
            "--ckpt_path",
            str(checkpoint),
            "--model.inference.mode",
            "slide",
            "--model.inference.tile_size",
            "32",
            "--model.inference.hflip",
            "true",
            "--model.inference.scales",
            "[1.0, 0.75]",
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert float(metrics["val/tta_passes"]) == 4
    assert 0.0 <= float(metrics["val/mIoU"]) <= 1.0
    # The settings change what is measured: one whole-image pass gives another loss.
    plain = main(["validate", *TINY, "--ckpt_path", str(checkpoint)]).trainer.callback_metrics
    assert float(plain["val/tta_passes"]) == 1
    assert float(plain["val/loss"]) != pytest.approx(float(metrics["val/loss"]), rel=1e-4)


def test_predict_from_the_checkpoint_alone_equals_predict_with_the_experiment(tmp_path):
    """A model trained with its own normalisation: ``seglab predict --ckpt_path`` without the YAML
    normalises the images as the checkpoint records, exactly as the experiment does."""
    config = tmp_path / "own_norm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "class_path": "seglab.SyntheticDataModule",
                    "init_args": {"mean": [0.2, 0.3, 0.4], "std": [0.5, 0.6, 0.7]},
                }
            }
        )
    )
    run = ["--trainer.default_root_dir", str(tmp_path / "run")]
    fit = main(["fit", *TINY, "--config", str(config), "--trainer.max_steps", "2", *run])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    images = write_images(tmp_path / "images", {"a": (45, 67), "b": (64, 64)})
    with_yaml = predict(ckpt, images, tmp_path / "with", "--config", str(config))
    args = ["predict", "--ckpt_path", ckpt, "--data.predict_dir", str(images)]
    alone = main([*args, "--output_dir", str(tmp_path / "alone")])
    assert alone.datamodule.mean == (0.2, 0.3, 0.4) and alone.datamodule.std == (0.5, 0.6, 0.7)
    assert with_yaml.datamodule.mean == alone.datamodule.mean
    for name in ("a.png", "b.png"):
        ours = np.array(Image.open(tmp_path / "alone" / name))
        assert np.array_equal(ours, np.array(Image.open(tmp_path / "with" / name)))


@pytest.mark.parametrize("overwrite", ["false", "true"])
def test_inputs_that_would_write_the_same_output_are_refused_before_anything_is_written(
    checkpoint, tmp_path, capsys, overwrite
):
    images = write_images(tmp_path / "images", {"a": (45, 67), "b": (40, 40)})
    Image.open(images / "a.png").save(images / "a.jpg")  # a.png and a.jpg would both write a.png
    out = tmp_path / "out"
    args = predict_args(checkpoint, images, out, "--overwrite", overwrite)
    message = user_error(args, capsys, 1, "would both be written to", f"{out}/a.png")
    assert f"{images}/a.png and {images}/a.jpg" in message
    assert list(out.iterdir()) == []


def test_an_input_named_like_another_inputs_extra_output_is_refused(checkpoint, tmp_path, capsys):
    images = write_images(tmp_path / "images", {"a": (45, 67), "a_color": (40, 40)})
    out = tmp_path / "out"
    predict(checkpoint, images, out)  # without colour outputs the names do not meet
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_color.png"]
    args = predict_args(checkpoint, images, tmp_path / "out2", "--save_color", "true")
    user_error(args, capsys, 1, "would both be written to", "out2/a_color.png")


def test_overwrite_never_replaces_an_output_of_the_same_run(tmp_path):
    writer = PredictionWriter(tmp_path / "out", overwrite=True)
    writer.output_dir.mkdir()
    first = {"name": ["photos/a.png"]}
    writer.write_on_batch_end(None, None, torch.zeros(1, 4, 4, dtype=torch.long), None, first, 0, 0)
    second = {"name": ["other/a.png"]}  # a dataset whose names the up-front check could not see
    with pytest.raises(DataError, match=r"a\.png: written for photos/a\.png in this run already"):
        writer.write_on_batch_end(
            None, None, torch.ones(1, 4, 4, dtype=torch.long), None, second, 1, 0
        )
    assert (np.array(Image.open(tmp_path / "out/a.png")) == 0).all()


def test_prediction_of_a_rotated_photo_follows_data_exif_orientation(checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    save_jpeg(rgb, images / "phone.jpg", orientation=6)  # viewers show it 64x40 (HxW)
    args = predict_args(checkpoint, images, tmp_path / "refused")
    user_error(args, capsys, 1, "phone.jpg: EXIF orientation 6", "data.exif_orientation")
    for setting, shape in (("apply", (64, 40)), ("ignore", (40, 64))):
        out = tmp_path / setting
        predict(
            checkpoint,
            images,
            out,
            "--data.init_args.exif_orientation",
            setting,
            "--save_overlay",
            "true",
        )
        assert np.array(Image.open(out / "phone.png")).shape == shape
        assert np.array(Image.open(out / "phone_overlay.png")).shape == (*shape, 3)
