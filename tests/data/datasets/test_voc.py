import numpy as np
import pytest
from PIL import Image

from seglab import DataError, VOCDataModule
from seglab.data.palette import default_palette
from tests.data.datasets.fixtures import fast_dev_run, write_voc


def test_palette_pngs_give_class_ids_and_boundaries_are_ignored(tmp_path):
    root = write_voc(tmp_path / "voc", train=4, val=3)
    dm = VOCDataModule(str(root), num_workers=0)
    assert dm.num_classes == 21 and dm.class_names[15] == "person"
    assert (
        dm.palette[:3]
        == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
        == [tuple(c) for c in default_palette(3).tolist()]
    )
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [4, 3, 3]
    ds = dm.source("val")
    _, mask, _ = ds.read(0)
    png = Image.open(ds.pairs[0][1])
    assert png.mode == "P"  # indices, not colours
    assert np.array_equal(mask.numpy(), np.array(png))
    assert (mask[:, 8:10] == 255).all()
    assert set(ds[0]["mask"].unique().tolist()) <= {*range(21), 255}


@pytest.mark.parametrize("sbd_format", ["mat", "aug"])
def test_sbd_augmented_train_set_excludes_val_images(tmp_path, sbd_format):
    if sbd_format == "mat":
        pytest.importorskip("scipy")
    root = write_voc(tmp_path / "voc", train=3, val=2, sbd=4, sbd_format=sbd_format)
    dm = VOCDataModule(str(root), use_sbd=True, num_workers=0)
    train = dm.source("train")
    ids = [image.stem for image, _ in train.pairs]
    val_ids = [image.stem for image, _ in dm.source("val").pairs]
    assert len(ids) == 3 + 4 and not set(ids) & set(val_ids)
    if sbd_format == "mat":
        # VOC's own annotation where there is one, SBD's .mat elsewhere
        assert [m.suffix for _, m in train.pairs] == [".png"] * 3 + [".mat"] * 4
    _, mask, _ = train.read(len(ids) - 1)
    assert mask.shape == (48, 64) and int(mask.max()) <= 20
    assert set(train[len(ids) - 1]["mask"].unique().tolist()) <= {*range(21), 255}


def test_use_sbd_without_sbd_data_is_a_clear_error(tmp_path):
    root = write_voc(tmp_path / "voc", train=2, val=1)
    with pytest.raises(DataError, match=r"no SBD data found.*SegmentationClassAug"):
        VOCDataModule(str(root), use_sbd=True, num_workers=0).setup("fit")


def test_experiment_runs_a_step(tmp_path):
    root = write_voc(tmp_path / "voc", train=2, val=1, sbd=2, sbd_format="aug")
    cli = fast_dev_run("voc_deeplabv3plus_resnet50", root, "--model.encoder_name", "tu-test_resnet")
    assert cli.trainer.global_step == 1 and cli.model.hparams.num_classes == 21
