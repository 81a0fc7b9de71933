"""What the README tells a user to type works as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from seglab.cli import main
from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from seglab.losses import CrossEntropyLoss

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (block,) = python_blocks()
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    model = scope["model"]  # loaded from the checkpoint alone
    assert scope["ids"].shape == (120, 160) and int(scope["ids"].max()) < 6
    assert model.class_names == scope["data"].class_names and "circle" in capsys.readouterr().out
    assert model.hparams.mean == IMAGENET_MEAN and model.hparams.std == IMAGENET_STD
    assert type(model.criterion) is CrossEntropyLoss and model.criterion.label_smoothing == 0.05
    assert model.hparams.lr_scheduler["init_args"]["warmup_ratio"] == 0.1


def test_the_experiment_file_example_is_a_valid_experiment(tmp_path, capsys):
    """Every key of the README's example experiment is one the parser knows, with a valid value."""
    (block,) = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    config = tmp_path / "example.yaml"
    config.write_text(block)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["arch"] == "deeplabv3plus"
    assert resolved["data"]["init_args"]["augment"]["max_class_ratio"] == 0.75
