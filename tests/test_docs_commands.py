"""Every shell command of the README and of every page under docs/ runs, in the page's order, as a
reader types it (the substitutions: ``tests/docs_blocks.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from PIL import Image

from seglab.cli import main
from tests import docs_blocks
from tests.conftest import write_folder_dataset
from tests.data.datasets.fixtures import write_camvid, write_voc
from tests.docs_blocks import REPO


@pytest.fixture(scope="session")
def tiny_quickstart(tmp_path_factory) -> Path:
    """``outputs/quickstart`` of a tiny quickstart run, trained once for every page."""
    where = tmp_path_factory.mktemp("quickstart")
    (where / "experiments").symlink_to(REPO / "experiments")
    argv = ["fit", "--config", "experiments/quickstart.yaml"]
    here = Path.cwd()
    os.chdir(where)
    try:
        main([*argv, *docs_blocks.tiny_sizes(argv)])
    finally:
        os.chdir(here)
    return where / "outputs"


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:
    """The files the placeholders stand for, and local pretrained weights per encoder."""
    root = tmp_path_factory.mktemp("places")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "street", "b"):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{name}.png")
    weights = {}
    for name in ("resnet34", "resnet50"):  # the encoders of the lines and recipes asking imagenet
        path = root / f"{name}.pth"
        torch.save(smp.encoders.get_encoder(name, weights=None).state_dict(), path)
        weights[name] = str(path)
    places = {
        "experiments/X.yaml": "experiments/quickstart.yaml",
        "/scratch/CamVid": str(write_camvid(root / "CamVid")),
        "/data/voc": str(write_voc(root / "voc", sbd=2)),
        "my_dataset": str(write_folder_dataset(root / "my_dataset", {"train": 4, "val": 2}, 4)),
        "imgs": str(images),
        "my_images": str(images),
        "a.png": str(images / "a.png"),
        "street.png": str(images / "street.png"),
        "last.ckpt": "outputs/quickstart/checkpoints/last.ckpt",
    }
    return places, weights


def run_ddp(argv: list[str]) -> subprocess.CompletedProcess:
    """Several processes cannot start inside pytest's: the line runs as its own command."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "seglab", *argv], env=env, capture_output=True, text=True
    )


def run_seglab(command: str, argv: list[str], capsys) -> None:
    if "--trainer.devices" in argv:
        run = run_ddp(argv)
        output = run.stdout[-3000:] + run.stderr[-3000:]
        assert run.returncode == 0, output
        return
    if argv[:2] == ["weights", "fetch"] and "quickstart" not in argv[-1]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1, command
        message = capsys.readouterr().err.splitlines()[-1]
        assert "not in the local cache and HF_HUB_OFFLINE is set" in message, message
        return
    try:
        main(argv)
    except SystemExit as e:  # --help, --print_config
        assert e.code in (0, None), f"{command}\n{capsys.readouterr().err[-3000:]}"


def test_every_command_is_run_or_says_why_not():
    """A command of a page that is not ``seglab`` must say why it does not run (NOT_RUN)."""
    unexplained = [
        f"{docs_blocks.page_id(page)}: {command}"
        for page in docs_blocks.pages()
        for command in docs_blocks.shell_commands(page)
        if not command.startswith("seglab ") and docs_blocks.not_run(command) is None
    ]
    assert not unexplained, "run these or add them to NOT_RUN with why:\n" + "\n".join(unexplained)


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", docs_blocks.pages_with(*docs_blocks.SHELL_FENCES), ids=docs_blocks.page_id
)
def test_every_seglab_command_of_the_page_runs(
    page, tiny_quickstart, generated, monkeypatch, capsys
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # for the processes it starts; and for this one,
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import
    places, weights = generated
    # The pages' paths are relative to the repository; runs write in this test's directory.
    (Path.cwd() / "experiments").symlink_to(REPO / "experiments")
    shutil.copytree(tiny_quickstart, Path.cwd() / "outputs")
    commands = [c for c in docs_blocks.shell_commands(page) if c.startswith("seglab ")]
    for command in commands:
        argv = docs_blocks.substituted(command, places, weights)
        run_seglab(command, argv, capsys)
    for command in commands:  # what the commands say they write is there
        argv = docs_blocks.substituted(command, places, weights)
        output_dir = docs_blocks.option(argv, "--output_dir")
        if output_dir is not None and argv[0] in ("predict", "export"):
            assert any((Path.cwd() / output_dir).iterdir()), command
