"""What the README tells a user to type works as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from seglab.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (block,) = python_blocks()
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert "circle" in capsys.readouterr().out and (tmp_path / "unet.ckpt").is_file()


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
