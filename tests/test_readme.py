"""What the README tells a user to type works as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (block,) = python_blocks()
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert "circle" in capsys.readouterr().out and (tmp_path / "unet.ckpt").is_file()
