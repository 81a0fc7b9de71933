"""Every Python block of the README and of every page under docs/ runs as written, and every YAML
block that is (part of) an experiment file is a valid experiment (``tests/docs_blocks.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from seglab.cli import main
from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from seglab.losses import CrossEntropyLoss
from tests import docs_blocks
from tests.docs_blocks import QUICKSTART, REPO


def readme_example_does_what_it_says(scope: dict, out: str) -> None:
    """The README's example: the checkpoint alone rebuilds the model, its loss and its schedule."""
    model = scope["model"]  # loaded from the checkpoint alone
    assert scope["ids"].shape == (120, 160) and int(scope["ids"].max()) < 6
    assert model.class_names == scope["data"].class_names and "circle" in out
    assert model.hparams.mean == IMAGENET_MEAN and model.hparams.std == IMAGENET_STD
    assert type(model.criterion) is CrossEntropyLoss and model.criterion.label_smoothing == 0.05
    assert model.hparams.lr_scheduler["init_args"]["warmup_ratio"] == 0.1


def extending_example_trains_the_parts(scope: dict, out: str) -> None:
    """The extending guide's parts are the ones the module trained with, and the callback ran."""
    model = scope["model"]
    assert type(model.model).__name__ == "TinyNet"
    assert type(model.criterion).__name__ == "SoftIoULoss"
    assert model.criterion.ignore_index == 255  # given the module's
    network = {"class_path": "__docs__.TinyNet", "init_args": {"in_channels": 3, "num_classes": 3}}
    assert model.hparams.network == network and model.hparams.loss["class_path"].endswith("IoULoss")
    assert scope["trainer"].global_step == 4 and "epoch 1: val/mIoU" in out


def rare_classes_counts_are_the_masks(scope: dict, out: str) -> None:
    counts, dm = scope["counts"], scope["dm"]
    assert counts.shape == (8, dm.num_classes) and int(counts.sum()) > 0 and "pole" in out


# What a page's Python blocks claim, checked on their namespace after they ran.
CHECKS: dict[str, Callable[[dict, str], None]] = {
    "README.md": readme_example_does_what_it_says,
    "docs/guides/extending.md": extending_example_trains_the_parts,
    "docs/guides/rare-classes.md": rare_classes_counts_are_the_masks,
}


ALONE = [
    p
    for p in docs_blocks.pages_with("python")
    if docs_blocks.page_id(p) not in docs_blocks.RUN_IN_PAGE_ORDER
]


@pytest.mark.parametrize("page", ALONE, ids=docs_blocks.page_id)
def test_the_python_blocks_of_the_page_run(page: Path, capsys):
    """(The blocks of ``RUN_IN_PAGE_ORDER``'s pages run with their commands, in
    tests/test_docs_commands.py.)"""
    scope: dict = {"__name__": "__docs__"}
    for i, block in enumerate(docs_blocks.blocks(page, "python")):
        exec(compile(block, f"{docs_blocks.page_id(page)} (python block {i + 1})", "exec"), scope)
    check = CHECKS.get(docs_blocks.page_id(page))
    if check is not None:
        check(scope, capsys.readouterr().out)


def test_every_check_names_a_page_with_python():
    assert set(CHECKS) <= {docs_blocks.page_id(p) for p in docs_blocks.pages_with("python")}


@pytest.mark.parametrize("page", docs_blocks.pages_with("yaml"), ids=docs_blocks.page_id)
def test_the_experiment_blocks_of_the_page_are_valid(page: Path, tmp_path, capsys):
    """Every key of an experiment block is one the parser knows, with a valid value."""
    for i, block in enumerate(docs_blocks.experiment_blocks(page)):
        config = tmp_path / f"block{i}.yaml"
        config.write_text(block)
        written = yaml.safe_load(block)
        # A whole experiment alone; a part of one on top of the quickstart.
        base = [] if {"model", "data"} <= set(written) else ["--config", str(QUICKSTART)]
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *base, "--config", str(config), "--print_config"])
        assert exit_.value.code in (0, None), capsys.readouterr().err[-2000:]
        resolved = yaml.safe_load(capsys.readouterr().out)
        assert_written_values_kept(written, resolved)


def assert_written_values_kept(written, resolved, where: str = "") -> None:
    """Every value the block writes is the resolved config's (a class path by its class name:
    ``seglab.FolderDataModule`` resolves to its module's path)."""
    if isinstance(written, dict):
        assert isinstance(resolved, dict), (where, resolved)
        for key, value in written.items():
            key = key if key in resolved else str(key)  # the resolved config's keys are strings
            assert key in resolved, f"{where}.{key} is not in the resolved config"
            assert_written_values_kept(value, resolved[key], f"{where}.{key}")
    elif where.endswith("class_path"):
        assert resolved.rsplit(".", 1)[-1] == written.rsplit(".", 1)[-1], (where, resolved)
    elif isinstance(written, list) and written and isinstance(written[0], dict):
        for w, r in zip(written, resolved, strict=True):
            assert_written_values_kept(w, r, where)
    else:
        assert resolved == written or list(resolved) == list(written), (where, resolved, written)


def test_the_experiments_guide_has_an_experiment_file():
    assert docs_blocks.experiment_blocks(REPO / "docs" / "guides" / "experiments.md")
