"""W&B without an API key: offline with one notice, never a prompt or a crash."""

from __future__ import annotations

import io
import os

import pytest
import wandb
from jsonargparse import Namespace

from seglab.cli import SeglabCLI
from seglab.cli.loggers import offline_without_credentials
from seglab.compat import wandb_credentials_configured
from tests.conftest import TINY

WANDB = Namespace(
    class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(save_dir="runs")
)


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """A user who never ran ``wandb login``, in a batch job (stdin is not a terminal)."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_no_key_switches_to_offline_with_one_notice(no_credentials, capsys):
    assert not wandb_credentials_configured()
    assert offline_without_credentials(WANDB) is not None
    assert os.environ["WANDB_MODE"] == "offline"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "offline under runs/wandb" in err[0]
    assert "wandb sync runs/wandb" in err[0]


def test_a_netrc_key_or_a_chosen_mode_is_left_alone(no_credentials, monkeypatch):
    (no_credentials / ".netrc").write_text(
        f"machine api.wandb.ai\n  login user\n  password {'a' * 40}\n"
    )
    (no_credentials / ".netrc").chmod(0o600)
    assert wandb_credentials_configured()
    assert offline_without_credentials(WANDB) is None and "WANDB_MODE" not in os.environ

    (no_credentials / ".netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert offline_without_credentials(WANDB) is None and os.environ["WANDB_MODE"] == "disabled"


def test_other_loggers_are_not_touched(no_credentials):
    csv = Namespace(
        class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir="x")
    )
    for logger in (None, False, True, csv, [csv]):
        assert offline_without_credentials(logger) is None
    assert "WANDB_MODE" not in os.environ


def test_the_cli_starts_a_wandb_run_offline_without_a_key(no_credentials, tmp_path, capsys):
    args = [a for a in TINY]
    del args[args.index("--trainer.logger") : args.index("--trainer.logger") + 2]
    cli = SeglabCLI(
        run=False,
        args=[
            *args,
            "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
            f"--trainer.logger.save_dir={tmp_path}",
        ],
    )
    assert os.environ["WANDB_MODE"] == "offline"
    assert capsys.readouterr().err.count("runs are stored offline") == 1
    run = cli.trainer.logger.experiment  # wandb.init: would prompt or raise without the fallback
    try:
        assert run.settings.mode == "offline"
        assert list(tmp_path.glob("wandb/offline-run-*"))
    finally:
        run.finish()
        wandb.teardown()
