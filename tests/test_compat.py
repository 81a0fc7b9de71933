"""The private names seglab/compat.py relies on still exist in the installed versions, and those
versions are inside the bounds pyproject.toml declares (the versions this was tested with)."""

from __future__ import annotations

import csv
from importlib.metadata import version
from pathlib import Path

import pytest
import wandb
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from packaging.requirements import Requirement

from seglab.compat import (
    checkpoint_metrics_step,
    continue_csv_metrics,
    ddp_find_unused_parameters,
    ddp_finds_unused_parameters,
    set_received_sigterm,
    wandb_logged_metrics,
    wandb_offline,
)

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
BOUNDED = ("lightning", "jsonargparse", "wandb", "huggingface-hub", "segmentation-models-pytorch")


def requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {Requirement(d).name: Requirement(d) for d in deps}


@pytest.mark.parametrize("package", BOUNDED)
def test_installed_versions_are_inside_the_declared_bounds(package):
    requirement = requirements()[package]
    assert any(spec.operator == "<" for spec in requirement.specifier), f"{package}: no upper bound"
    assert requirement.specifier.contains(version(package), prereleases=True), version(package)


def test_lightning_cli_still_has_the_two_overridden_methods():
    assert callable(LightningCLI._parse_ckpt_path)
    assert callable(LightningCLI._prepare_subcommand_parser)


def test_ddp_keeps_its_arguments_where_compat_reads_them():
    assert ddp_finds_unused_parameters(DDPStrategy(find_unused_parameters=True))
    assert not ddp_finds_unused_parameters(DDPStrategy())


def test_wandb_and_hub_internals_exist():
    from huggingface_hub import constants
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib.wbauth import read_netrc_auth
    from wandb.sdk.wandb_settings import Settings

    assert callable(read_netrc_auth) and isinstance(constants.HF_HUB_OFFLINE, bool)
    settings = Settings()
    assert callable(settings.update_from_system_settings)
    assert callable(settings.update_from_env_vars)
    assert hasattr(wandb_setup.singleton(), "settings_if_loaded")


def test_litdata_still_picks_its_object_store_client_by_scheme():
    pytest.importorskip("litdata")
    from seglab.compat import litdata_filesystem

    client = litdata_filesystem("s3://bucket/shards")  # boto3 builds its client offline
    for method in ("upload_file", "download_file", "exists"):
        assert callable(getattr(client, method)), method
    requirement = next(
        Requirement(d)
        for d in tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["stream"]
    )
    assert requirement.specifier.contains(version("litdata")), version("litdata")


def test_ddp_find_unused_parameters_is_set_where_ddp_reads_it():
    strategy = DDPStrategy()
    ddp_find_unused_parameters(strategy)
    assert ddp_finds_unused_parameters(strategy)


def test_the_stop_flag_is_the_one_lightnings_loops_read():
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert not trainer.received_sigterm
    set_received_sigterm(trainer)
    assert trainer.received_sigterm


def test_a_reused_csv_version_keeps_its_rows_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "csv" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text("epoch,step,train/loss\n0,0,1.0\n0,1,0.9\n0,2,0.8\n")
    logger = CSVLogger(tmp_path, name="csv", version=0)
    assert continue_csv_metrics(logger, before_step=2) == 2  # step 2 is logged again
    logger.log_metrics({"train/loss": 0.7, "val/mIoU": 0.5}, step=2)  # a new column too
    logger.save()
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["train/loss"], r["val/mIoU"]) for r in rows] == [
        ("0", "1.0", ""),
        ("1", "0.9", ""),
        ("2", "0.7", "0.5"),
    ]


def test_the_offline_wandb_file_is_read_and_the_fit_loop_step_found(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="p", id="compat01", dir=tmp_path)
    for step in range(40):  # more than one 32 KiB block
        run.log({"trainer/global_step": step, "x": step, "pad": "p" * 1000})
    run.finish()
    (path,) = tmp_path.glob("wandb/offline-run-*/run-compat01.wandb")
    assert [s for key, s in wandb_logged_metrics(path) if key == "x"] == list(range(40))
    assert wandb_offline(WandbLogger(offline=True)) and checkpoint_metrics_step({}) == 0
    checkpoint = {"loops": {"fit_loop": {"epoch_loop.state_dict": {"_batches_that_stepped": 7}}}}
    assert checkpoint_metrics_step(checkpoint) == 7
