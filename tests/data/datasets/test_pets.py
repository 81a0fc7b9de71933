import numpy as np
import pytest
import torch
from PIL import Image

from seglab import DataError, OxfordPetsDataModule
from tests.data.datasets.fixtures import fast_dev_run, write_pets


def test_trimaps_become_background_pet_and_ignored_boundary(tmp_path):
    root = write_pets(tmp_path / "pets", trainval=10, test=3)
    dm = OxfordPetsDataModule(str(root), num_workers=0)
    assert dm.class_names == ["background", "pet"] and len(dm.palette) == 2
    # every 10th trainval line (from the first) is validation, the rest train; test is test.txt
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [9, 1, 3]
    assert dm.source("val").pairs[0][0].name == "Abyssinian_trainval0.jpg"
    sample = dm.dataset("test")[0]
    trimap = dm.source("test").read(0)[1]
    raw = torch.from_numpy(np.array(Image.open(dm.source("test").pairs[0][1])))
    assert torch.equal(trimap == 1, raw == 1) and torch.equal(trimap == 0, raw == 2)
    assert torch.equal(trimap == 255, raw == 3)
    assert set(sample["mask"].unique().tolist()) == {0, 1, 255}


@pytest.mark.parametrize(
    ("boundary", "value", "num_classes"),
    [("foreground", 1, 2), ("background", 0, 2), ("class", 2, 3)],
)
def test_boundary_option(tmp_path, boundary, value, num_classes):
    root = write_pets(tmp_path / "pets", trainval=2, test=1)
    dm = OxfordPetsDataModule(str(root), boundary=boundary, num_workers=0)
    assert dm.num_classes == num_classes
    _, mask, _ = dm.source("test").read(0)
    assert value in mask.unique().tolist() and 255 not in mask.unique().tolist()


def test_missing_or_incomplete_root_is_a_clear_error(tmp_path):
    dm = OxfordPetsDataModule(str(tmp_path / "nowhere"), num_workers=0)
    with pytest.raises(DataError, match=r"nowhere is not a directory. Download images.tar.gz"):
        dm.setup("fit")
    (tmp_path / "pets" / "images").mkdir(parents=True)
    dm = OxfordPetsDataModule(str(tmp_path / "pets"), num_workers=0)
    with pytest.raises(DataError, match=r"trainval.txt: split list not found. Download"):
        dm.setup("fit")
    root = write_pets(tmp_path / "pets2", trainval=4, test=1)
    (root / "annotations" / "trimaps" / "Abyssinian_trainval2.png").unlink()
    with pytest.raises(
        DataError, match=r"trimaps/Abyssinian_trainval2.png: mask file not found\n\(files the"
    ):
        OxfordPetsDataModule(str(root), num_workers=0).setup("fit")


def test_download_without_network_fails_fast_with_manual_instructions(tmp_path, monkeypatch):
    import socket
    import time

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    dm = OxfordPetsDataModule(str(tmp_path / "pets"), download=True, num_workers=0)
    start = time.monotonic()
    with pytest.raises(
        DataError, match=r"cannot download https://www.robots.ox.ac.uk.*by hand|extract"
    ):
        dm.setup("fit")
    assert time.monotonic() - start < 15


def test_experiment_runs_a_step(tmp_path):
    root = write_pets(tmp_path / "pets", trainval=6, test=2)
    cli = fast_dev_run("pets_unet_resnet34", root, "--model.encoder_name", "tu-test_resnet")
    assert cli.trainer.global_step == 1 and cli.model.hparams.num_classes == 2
    assert "val/mIoU" in cli.trainer.callback_metrics
