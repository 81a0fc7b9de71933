"""Every ``seglab`` command reads an experiment the same way: ``--config`` plus the overrides of
fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from seglab.cli import COMMANDS, main
from seglab.cli.experiment import TRAINER_COMMANDS
from seglab.data.cache import DecodedCache
from tests.conftest import write_folder_dataset

EXPERIMENT = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu",
        "max_steps": 2,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
    "model": {"arch": "unet", "encoder_name": "tu-test_resnet", "encoder_weights": None},
    "data": {
        "class_path": "seglab.FolderDataModule",
        "init_args": {
            "root": "the/yaml/points/elsewhere",
            "num_classes": 3,
            "batch_size": 2,
            "eval_batch_size": 1,
            "num_workers": 0,
            "crop_size": 32,
            "cache_dir": "cache",
        },
    },
}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, Path]:
    """An experiment file whose data root is overridden on every command line, and the root."""
    tmp = tmp_path_factory.mktemp("experiment")
    root = write_folder_dataset(tmp / "data", {"train": 4, "val": 2, "test": 2})
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    return config, root


def args(experiment: tuple[Path, Path], *rest: str) -> list[str]:
    config, root = experiment
    return [*rest, "--config", str(config), "--data.init_args.root", str(root)]


def test_every_command_takes_the_config_and_overrides_of_fit(experiment, tmp_path, capsys):
    _, root = experiment
    fit = main(args(experiment, "fit"))
    assert fit.trainer.global_step == 2
    assert fit.datamodule.root == root
    ran = {"fit"}
    for command, prefix in (("validate", "val"), ("test", "test")):
        cli = main(args(experiment, command, "--ckpt_path", "last"))
        assert f"{prefix}/mIoU" in cli.trainer.callback_metrics
        ran.add(command)
    predict = args(experiment, "predict", "--ckpt_path", "last")
    main([*predict, "--data.init_args.predict_dir", str(root / "test/images"), "--output_dir", "p"])
    assert sorted(p.name for p in Path("p").iterdir()) == ["img000.png", "img001.png"]
    ran.add("predict")

    main(args(experiment, "check-data"))
    assert "No problems in train, val, test" in capsys.readouterr().out
    cache = main(args(experiment, "cache"))
    assert isinstance(cache.seglab_datamodule().source("train"), DecodedCache)
    assert len(list(Path("cache").iterdir())) >= 2  # one cache per split
    main(args(experiment, "weights", "fetch"))
    assert "nothing to download" in capsys.readouterr().out
    export = main(args(experiment, "export", "--ckpt_path", "last", "--output_dir", "exported"))
    assert export.written["torchscript"].is_file()
    image = str(root / "val/images/img000.png")
    explain = args(experiment, "explain", "--ckpt_path", "last", "--image", image, "--class", "1")
    assert main([*explain, "--output_dir", "maps"]).written["gradcam"].is_file()
    main(args(experiment, "stats"))
    assert "mean: [" in capsys.readouterr().out
    main(args(experiment, "optimize", "--output_dir", "shards", "--num_workers", "1"))
    assert (Path("shards") / "train" / "seglab.json").is_file()
    ran |= {"check-data", "cache", "weights", "export", "explain", "stats", "optimize"}
    assert ran == set(TRAINER_COMMANDS) | set(COMMANDS)


def test_check_data_finds_the_faults_under_the_overridden_root(experiment, tmp_path, capsys):
    _, root = experiment
    broken = write_folder_dataset(tmp_path / "broken", {"train": 3, "val": 2})
    Image.fromarray(np.full((40, 48), 7, np.uint8)).save(broken / "train/masks/img001.png")
    (broken / "val/images/img000.png").write_bytes(b"not a png")
    config, _ = experiment
    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", "--config", str(config), "--data.init_args.root", str(broken)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert str(broken / "train") in err and "mask has values [7]" in err
    assert str(broken / "val/images/img000.png") in err
    assert str(root) not in err
