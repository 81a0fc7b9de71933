import numpy as np
from PIL import Image

from seglab import ADE20KDataModule
from tests.data.datasets.fixtures import fast_dev_run, write_ade20k


def test_150_classes_and_zero_is_ignored(tmp_path):
    root = write_ade20k(tmp_path / "ade", train=3, val=2)
    dm = ADE20KDataModule(str(root), num_workers=0)
    assert dm.num_classes == 150 == len(dm.class_names) == len(dm.palette)
    assert dm.class_names[:3] == ["wall", "building", "sky"] and dm.class_names[-1] == "flag"
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [3, 2, 2]
    ds = dm.source("val")
    _, mask, _ = ds.read(0)
    raw = np.array(Image.open(ds.pairs[0][1])).astype(int)
    assert (mask.numpy()[raw == 0] == 255).all()
    assert (mask.numpy()[raw > 0] == raw[raw > 0] - 1).all()
    # root may also be the ADEChallengeData2016 directory itself
    assert len(ADE20KDataModule(str(root / "ADEChallengeData2016")).dataset("val")) == 2


def test_experiment_runs_a_step(tmp_path):
    root = write_ade20k(tmp_path / "ade", train=2, val=1)
    cli = fast_dev_run("ade20k_segformer_mit_b0", root)
    assert cli.trainer.global_step == 1 and cli.model.hparams.num_classes == 150
    assert cli.model.hparams.encoder_name == "mit_b0"
