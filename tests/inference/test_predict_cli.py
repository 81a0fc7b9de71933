"""``seglab predict --data.predict_dir DIR --output_dir OUT``: one class-id PNG per image, any size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seglab.cli import main
from tests.conftest import TINY
from tests.inference.conftest import write_images


def predict(checkpoint, source, output_dir, *extra: str):
    return main(
        [
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
    )


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
    predict(
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
