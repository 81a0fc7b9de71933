import numpy as np
import pytest
from PIL import Image

from seglab import CityscapesDataModule, DataError
from seglab.data.datasets.cityscapes import label_id_lut
from tests.data.datasets.fixtures import fast_dev_run, write_cityscapes


def test_label_ids_map_to_19_train_ids_and_the_rest_is_ignored(tmp_path):
    root = write_cityscapes(tmp_path / "cs", train=4, val=3, test=1)
    dm = CityscapesDataModule(str(root), num_workers=0)
    assert dm.num_classes == 19 and dm.class_names[0] == "road" and dm.class_names[18] == "bicycle"
    # test labels are not public: test is val
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [4, 3, 3]
    lut = label_id_lut(255)
    assert [int(lut[i]) for i in (7, 8, 11, 24, 26, 33)] == [0, 1, 2, 11, 13, 18]
    assert all(
        int(lut[i]) == 255 for i in (0, 1, 4, 29, 30)
    )  # unlabeled, ego, static, caravan, trailer
    ds = dm.source("val")
    _, mask, _ = ds.read(0)
    raw = np.array(Image.open(ds.pairs[0][1]))
    assert (mask.numpy()[np.isin(raw, [0, 1, 4, 29, 30])] == 255).all()
    assert (mask.numpy()[raw == 26] == 13).all()
    assert ds.pairs[0][0].parent.name == "frankfurt"


def test_missing_data_says_what_to_download(tmp_path):
    with pytest.raises(DataError, match=r"gtFine_trainvaltest.zip.*leftImg8bit_trainvaltest.zip"):
        CityscapesDataModule(str(tmp_path), num_workers=0).setup("fit")


def test_image_without_label_is_an_error(tmp_path):
    root = write_cityscapes(tmp_path / "cs", train=2, val=1)
    next((root / "gtFine" / "train").glob("*/*_labelIds.png")).unlink()
    with pytest.raises(DataError, match=r"its label .*_gtFine_labelIds.png is missing"):
        CityscapesDataModule(str(root), num_workers=0).setup("fit")


@pytest.mark.parametrize(
    "experiment", ["cityscapes_deeplabv3plus_resnet50", "cityscapes_fpn_resnet50"]
)
def test_experiments_run_a_step(tmp_path, experiment):
    root = write_cityscapes(tmp_path / "cs", train=2, val=1)
    cli = fast_dev_run(experiment, root, "--model.encoder_name", "tu-test_resnet")
    assert cli.trainer.global_step == 1 and cli.model.hparams.num_classes == 19
