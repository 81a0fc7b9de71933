"""Every ``seglab`` command line of the README runs, in the README's order, as a user types it.

The lines are taken from the README's ``bash`` blocks as written; what this machine lacks is put in
by documented substitutions, and nothing else changes:

- placeholders: ``experiments/X.yaml`` is the quickstart; ``[--section.key value ...]`` is left
  out, other ``[...]`` options are given; data roots (``/scratch/CamVid``, ``/data/voc``,
  ``my_dataset``), image folders (``imgs``, ``my_images``), images (``a.png``, ``street.png``) and
  ``last.ckpt`` are files generated here in the real layouts (``tests/data/datasets/fixtures.py``);
  ``--class car`` names a class of the quickstart's model (``circle``), which has no car;
- sizes: every command that trains or evaluates gets tiny sizes appended (a few steps, small images
  and batches, no data workers, no logger): options the line itself sets are left as it sets them;
- no network and no GPU: pretrained weights are a weights file this test writes (for the lines
  that ask for ``imagenet``, and the recipes that do), ``--trainer.devices 4`` runs 2 CPU processes
  (for two steps each), and ``seglab weights fetch`` of a recipe with pretrained weights must fail
  in one line naming what to do (HF_HUB_OFFLINE=1: the documented offline behaviour).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from PIL import Image

from seglab.cli import main
from tests.conftest import REPO, write_folder_dataset
from tests.data.datasets.fixtures import write_camvid, write_voc

README = REPO / "README.md"


def readme_commands() -> list[str]:
    """The ``seglab`` lines of the README's bash blocks, continuation lines joined, comments cut."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("seglab "):
                lines.append(" ".join(line.split()))
    return lines


def tiny_sizes(argv: list[str]) -> list[str]:
    """The size options appended to a command that trains or evaluates, minus those it sets."""
    data = argv[argv.index("--config") + 1] if "--config" in argv else ""
    sizes = {
        "--trainer.max_steps": "2",
        "--trainer.max_epochs": "1",
        "--trainer.logger": "false",
        "--trainer.enable_progress_bar": "false",
        "--trainer.accelerator": "cpu",
        "--data.init_args.batch_size": "2",
        "--data.init_args.eval_batch_size": "1",
        "--data.init_args.num_workers": "0",
    }
    if "--data" in argv:  # another data module, by class path: its own options
        sizes = {k.replace("init_args.", ""): v for k, v in sizes.items()}
    elif data.endswith("quickstart.yaml"):
        sizes |= {"--data.init_args.image_size": "64", "--data.init_args.crop_size": "64"}
        sizes |= {"--data.init_args.num_train": "4", "--data.init_args.num_val": "2"}
        sizes |= {"--data.init_args.num_test": "2"}
    else:  # a dataset recipe on a miniature copy of the dataset
        sizes |= {"--data.init_args.crop_size": "32"}
    extra = []
    for option, value in sizes.items():
        if option not in argv and not any(a.startswith(option + "=") for a in argv):
            extra += [option, value]
    return extra


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """The files the substitutions point to."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "street", "b"):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{name}.png")
    weights = {}
    for name in ("resnet34", "resnet50"):  # the encoders of the lines and recipes asking imagenet
        path = tmp_path / f"{name}.pth"
        torch.save(smp.encoders.get_encoder(name, weights=None).state_dict(), path)
        weights[name] = str(path)
    return {
        "camvid": str(write_camvid(tmp_path / "CamVid")),
        "voc": str(write_voc(tmp_path / "voc", sbd=2)),
        "folder": str(write_folder_dataset(tmp_path / "my_dataset", {"train": 4, "val": 2}, 4)),
        "images": str(images),
        "image": str(images / "a.png"),
        "street": str(images / "street.png"),
        **weights,
    }


def substituted(line: str, places: dict[str, str]) -> list[str]:
    line = line.replace(" [--section.key value ...]", "")
    line = re.sub(r"\[(--[^\]]+)\]", r"\1", line)  # optional options, given
    swaps = {
        "experiments/X.yaml": "experiments/quickstart.yaml",
        "/scratch/CamVid": places["camvid"],
        "/data/voc": places["voc"],
        "--data.root my_dataset": f"--data.root {places['folder']}",
        "predict_dir imgs": f"predict_dir {places['images']}",
        "predict_dir my_images": f"predict_dir {places['images']}",
        "--image a.png": f"--image {places['image']}",
        "--image street.png": f"--image {places['street']}",
        "--class car": "--class circle",
        "--ckpt_path last.ckpt": "--ckpt_path outputs/quickstart/checkpoints/last.ckpt",
        "--trainer.devices 4": "--trainer.devices 2",
        "--model.encoder_weights imagenet": f"--model.encoder_weights {places['resnet34']}",
    }
    for old, new in swaps.items():
        line = line.replace(old, new)
    argv = shlex.split(line)[1:]
    asks_help = any(a == "--help" or a.endswith(".help") for a in argv)
    if argv[0] in ("fit", "validate", "test", "predict") and not asks_help:
        if "--trainer.devices" in argv:  # two steps on each process: DDP checks from the second
            argv += ["--data.init_args.num_train", "8"]
        argv += tiny_sizes(argv)
        recipe = argv[argv.index("--config") + 1] if "--config" in argv else ""
        if "resnet50" in recipe and "--model.encoder_weights" not in argv:
            argv += ["--model.encoder_weights", places["resnet50"]]
        elif "camvid_unet_resnet34" in recipe and "--model.encoder_weights" not in argv:
            argv += ["--model.encoder_weights", places["resnet34"]]
    return argv


# Lines that fail today, each with its issue: the test fails when one of them starts to work, so
# that the entry is removed with the fix.
KNOWN_BROKEN: dict[str, str] = {}


def run_ddp(argv: list[str]) -> subprocess.CompletedProcess:
    """Several processes cannot start inside pytest's: the line runs as its own command."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "seglab", *argv], env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_every_seglab_command_of_the_readme_runs(places, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # for the processes it starts; and for this one,
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import
    # The README's paths are relative to the repository; runs write in this test's directory.
    (Path.cwd() / "experiments").symlink_to(REPO / "experiments")
    commands = readme_commands()
    assert len(commands) >= 25, commands
    for line in commands:
        argv = substituted(line, places)
        if "--trainer.devices" in argv:
            run = run_ddp(argv)
            output = run.stdout[-3000:] + run.stderr[-3000:]
            broken = [why for pattern, why in KNOWN_BROKEN.items() if pattern in line]
            if broken:
                assert run.returncode != 0 and "not used in producing the loss" in output, broken
            else:
                assert run.returncode == 0, output
            continue
        if argv[:2] == ["weights", "fetch"] and "quickstart" not in argv[-1]:
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == 1, line
            message = capsys.readouterr().err.splitlines()[-1]
            assert "not in the local cache and HF_HUB_OFFLINE is set" in message, message
            continue
        try:
            main(argv)
        except SystemExit as e:  # --help, --print_config
            assert e.code in (0, None), f"{line}\n{capsys.readouterr().err}"
    assert (Path.cwd() / "predictions").is_dir() and (Path.cwd() / "exported").is_dir()
