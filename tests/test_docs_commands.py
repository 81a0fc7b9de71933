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
import yaml
from PIL import Image

from seglab.cli import main
from tests import docs_blocks
from tests.conftest import write_folder_dataset
from tests.data.datasets.fixtures import write_camvid, write_voc
from tests.data.datasets.test_inria import write_inria
from tests.data.test_rasters import NODATA, scene, write_raster
from tests.docs_blocks import QUICKSTART, REPO


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
        "/data/inria": str(write_inria(root / "inria", {"austin": [1, 6]}, size=64)),
        "experiments/my_rasters.yaml": str(raster_experiment(root)),
        "scene.tif": str(write_raster(root / "scene.tif", scene(0, 512, 512)[0], nodata=NODATA)),
    }
    return places, weights


def raster_experiment(root: Path) -> Path:
    """The quickstart's trainer and model on a folder of 4-band uint16 GeoTIFFs with nodata."""
    for split, seed in (("train", 0), ("val", 1)):
        image, mask = scene(seed, 40, 48)
        write_raster(root / "rasters" / split / "images" / "t0.tif", image, nodata=NODATA)
        write_raster(root / "rasters" / split / "masks" / "t0.tif", mask[None])
    experiment = yaml.safe_load(QUICKSTART.read_text())
    experiment["data"] = {
        "class_path": "seglab.RasterDataModule",
        "init_args": {"root": str(root / "rasters"), "num_classes": 3, "eval_window": 32},
    }
    path = root / "my_rasters.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


def run_ddp(argv: list[str]) -> subprocess.CompletedProcess:
    """Several processes cannot start inside pytest's: the line runs as its own command."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "seglab", *argv], env=env, capture_output=True, text=True
    )


def run_seglab(command: str, argv: list[str], capsys) -> None:
    if argv[0] == "optimize":  # LitData forks its writers: from a fresh process, not from pytest's
        run = run_ddp(argv)  # threads (a fork of a threaded process can deadlock)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return
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
    in_order = docs_blocks.page_id(page) in docs_blocks.RUN_IN_PAGE_ORDER
    scope: dict = {"__name__": "__docs__"}
    commands = []
    for i, (kind, step) in enumerate(docs_blocks.steps(page)):
        if kind == "python" and in_order:
            code = docs_blocks.python_with_places(step, places)
            exec(compile(code, f"{docs_blocks.page_id(page)} (step {i + 1})", "exec"), scope)
        elif kind == "shell" and step.startswith("seglab ") and not docs_blocks.not_run(step):
            run_seglab(step, docs_blocks.substituted(step, places, weights), capsys)
            commands.append(step)
    for command in commands:  # what the commands say they write is there
        argv = docs_blocks.substituted(command, places, weights)
        output_dir = docs_blocks.option(argv, "--output_dir")
        if output_dir is not None and argv[0] in ("predict", "export"):
            assert any((Path.cwd() / output_dir).iterdir()), command
