"""The private names seglab/compat.py relies on still exist in the installed versions, and those
versions are inside the bounds pyproject.toml declares (the versions this was tested with)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.strategies import DDPStrategy
from packaging.requirements import Requirement

from seglab.compat import ddp_finds_unused_parameters

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
