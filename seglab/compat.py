"""Every use of a dependency's private API, in one place.

Each use is here because the library offers no public way to do it; each says why and with which
versions it was tested (``tests/test_compat.py`` checks that the names still exist, and
``pyproject.toml`` bounds the dependencies to the tested versions). Nothing else in seglab touches
an underscore name of Lightning, jsonargparse, wandb, huggingface_hub or smp.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.core.mixins import hparams_mixin
from lightning.pytorch.strategies import DDPStrategy, Strategy

# Lightning's own rebuilder of a module from recorded configs, on the allow-list that
# ``load_from_checkpoint`` checks (lightning.pytorch.core.saving._ALLOWED_INSTANTIATORS, 2.4-2.6).
INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
INSTANTIATOR_KEY = "_instantiator"


class LightningCLIHooks(LightningCLI):
    """Two points of ``LightningCLI`` (lightning 2.4-2.6) that have no public hook."""

    def _parse_ckpt_path(self) -> None:
        # __init__ calls this right after parsing to merge the checkpoint's hyper-parameters into
        # the config, with torch.load(weights_only=True) whatever --weights_only says and no error
        # that names the file. seglab resolves, checks and merges the checkpoint itself.
        self.apply_checkpoint()

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        # add_arguments_to_parser is called without the subcommand's name; options that belong to
        # one subcommand (predict's output files) are added here.
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self.add_subcommand_arguments(parser, subcommand)
        return parser

    def apply_checkpoint(self) -> None:
        """Resolves and checks ``--ckpt_path`` and merges what it records into the config."""

    def add_subcommand_arguments(self, parser: LightningArgumentParser, subcommand: str) -> None:
        """Adds the options of one subcommand."""


@contextmanager
def recording_config(config: dict[str, Any]) -> Iterator[None]:
    """Modules built inside record ``config`` (the parsed ``class_path``/``init_args`` of their
    arguments) as their hyper-parameters, rebuilt by Lightning's ``instantiate_module`` on load.

    What ``LightningCLI(load_from_checkpoint_support=True)`` does for the modules it builds, through
    ``hparams_mixin._given_hyperparameters_context`` (lightning 2.4-2.6), which has no public
    counterpart; seglab builds its model itself (the classes come from the data module)."""
    with hparams_mixin._given_hyperparameters_context(hparams=config, instantiator=INSTANTIATOR):
        yield


def recorded_config() -> dict[str, Any] | None:
    """The config ``recording_config`` gives the module being built, or None (built in Python)."""
    return hparams_mixin._given_hyperparameters.get()


def metrics_step(trainer: Any) -> int:
    """The step Lightning logs metrics at: during fit, batches that made an optimizer step
    (``fit_loop.epoch_loop._batches_that_stepped``, lightning 2.4-2.6), which validation inside fit
    sees one lower than ``global_step``. Images and tables of a validation are logged at the same
    step as its metrics."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def ddp_finds_unused_parameters(strategy: Strategy) -> bool:
    """Whether a DDP strategy tolerates parameters without gradients (frozen ones).

    ``DDPStrategy`` (lightning 2.4-2.6) keeps its DistributedDataParallel arguments in
    ``_ddp_kwargs`` and exposes no accessor. Not DDP: True (nothing to tolerate)."""
    if not isinstance(strategy, DDPStrategy):
        return True
    return bool(strategy._ddp_kwargs.get("find_unused_parameters", False))


def ddp_find_unused_parameters(strategy: DDPStrategy) -> None:
    """Turns on DistributedDataParallel's ``find_unused_parameters`` for a DDP strategy that has
    not wrapped the module yet (``_ddp_kwargs``, lightning 2.4-2.6; the public way is the strategy
    name ``ddp_find_unused_parameters_true``, which the user may not have chosen)."""
    strategy._ddp_kwargs["find_unused_parameters"] = True


def set_received_sigterm(trainer: Any) -> None:
    """Sets the flag Lightning's loops read to stop at the end of the batch (lightning 2.4-2.6:
    ``trainer._signal_connector.received_sigterm``; ``trainer.received_sigterm`` is read-only).
    seglab's own signal handler sets it instead of Lightning's, which runs collectives inside the
    handler (2.6) and so can meet the other ranks in the middle of a gradient all-reduce."""
    trainer._signal_connector.received_sigterm = True


def wandb_credentials_configured() -> bool:
    """Whether ``wandb.init`` would find credentials without asking: ``WANDB_API_KEY``, an identity
    token file, ``~/.netrc`` for the configured base URL, or the settings' ``api_key``.

    wandb (0.18-0.31) has no public "is a key configured" call (``wandb.login`` prompts), so the
    settings are read as ``wandb.setup`` reads them (settings file, then environment) with
    ``wandb.sdk`` internals, on a fresh ``Settings``: loading wandb's global settings here would
    freeze them before ``WANDB_MODE`` is set. Any failure counts as no key: offline is the safe
    answer."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth
        from wandb.sdk.wandb_settings import Settings

        settings = Settings()
        config_dir = Path(os.environ.get("WANDB_CONFIG_DIR", "~/.config/wandb")).expanduser()
        settings.settings_system = str(config_dir / "settings")
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        return bool(read_netrc_auth(host=settings.base_url) or settings.api_key)
    except Exception:
        return False


def wandb_settings_offline() -> None:
    """Applies ``WANDB_MODE=offline`` to wandb's settings if this process loaded them already (a
    notebook that used wandb before): they are read once, from the environment of that moment.
    ``wandb_setup.singleton().settings_if_loaded`` is wandb 0.18-0.31 internals."""
    from wandb.sdk import wandb_setup

    loaded = wandb_setup.singleton().settings_if_loaded
    if loaded is not None:
        loaded.update_from_env_vars({"WANDB_MODE": "offline"})


def wandb_records(path: str | Path) -> Iterator[Any]:
    """The records (``wandb_internal_pb2.Record``) of a W&B run's transaction log
    (``run-<id>.wandb``), as written offline.

    wandb (0.31) has no public reader of its offline files. The format (wandb's
    ``internal/datastore``, the same in 0.18-0.31): a 7-byte header (``:W&B``, magic, version),
    then LevelDB-log chunks in 32 KiB blocks counted from the end of that header, each chunk with a
    7-byte header (CRC32-C, length, type: 1 full, 2 first, 3 middle, 4 last) around a part of a
    serialized ``Record``."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    block, header, position, pending = 32768, 7, 7, b""
    while position + header <= len(data):
        left = block - (position - header) % block  # blocks start after the file header
        if left < header:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        if kind == 0 or position + header + length > len(data):  # end, or cut by a kill
            break
        chunk = data[position + header : position + header + length]
        position += header + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def wandb_logged_metrics(
    path: str | Path, step_key: str = "trainer/global_step"
) -> list[tuple[str, int]]:
    """``(metric, step)`` for every metric of every history row of a W&B transaction log, in the
    order logged; the step is the row's ``step_key`` (rows without it are left out)."""
    found = []
    for record in wandb_records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {
            item.key or "/".join(item.nested_key): item.value_json for item in record.history.item
        }
        if step_key not in row:
            continue
        step = int(json.loads(row[step_key]))
        found += [(key, step) for key in row if not key.startswith("_") and key != step_key]
    return found


def wandb_offline(logger: Any) -> bool:
    """Whether a WandbLogger writes offline: ``WANDB_MODE`` offline, or its ``offline=True``
    (kept as ``_offline`` by lightning 2.4-2.6 and applied only when the run starts)."""
    mode = os.environ.get("WANDB_MODE", "")
    return mode in ("offline", "dryrun") or bool(getattr(logger, "_offline", False))


def continue_csv_metrics(logger: Any, before_step: int) -> int:
    """Lets a CSVLogger continue its version's ``metrics.csv`` instead of deleting it.

    Lightning's CSV writer (``lightning.fabric.loggers.csv_logs._ExperimentWriter``, 2.4-2.6)
    removes an existing ``metrics.csv`` when it is created and appends only to a file it wrote
    itself (``metrics_keys``). The file is read first and written back without the rows at
    ``before_step`` or later (logged past the checkpoint by a run that was killed, and logged
    again by the resumed one), and the writer learns its columns. Returns the rows kept."""
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [row for row in reader if not row.get("step") or int(row["step"]) < before_step]
    with warnings.catch_warnings():  # "Previous log files ... will be deleted": not any more
        warnings.filterwarnings("ignore", "Experiment logs directory")
        writer = logger.experiment
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = fields
    return len(rows)


def checkpoint_metrics_step(checkpoint: dict[str, Any]) -> int:
    """The step the next metrics of a run resumed from ``checkpoint`` are logged at: its fit
    loop's ``_batches_that_stepped`` (lightning 2.4-2.6 loop state), else its global step."""
    try:
        loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
        return int(loop["_batches_that_stepped"])
    except (KeyError, TypeError):
        return int(checkpoint.get("global_step", 0))


@contextmanager
def hub_offline() -> Iterator[None]:
    """Every Hugging Face hub request inside the block is refused, so files come from the cache.

    smp and timm download through ``hf_hub_download`` without a ``local_files_only`` argument, and
    ``huggingface_hub`` (0.2x-2.x) reads ``HF_HUB_OFFLINE`` only into ``constants`` at import; the
    constant is set for the duration of the block."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def litdata_filesystem(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """LitData's client for the object store of ``url`` (``s3://``, ``gs://``, ``r2://``), with its
    public ``upload_file(local, remote)`` and ``download_file(remote, local)``: the one LitData's
    own ``optimize`` and ``StreamingDataset`` use, so seglab's small ``seglab.json`` beside the
    shards goes through the same credentials and endpoint. LitData (0.2.x, tested 0.2.76) picks it
    by scheme in ``litdata.streaming.fs_provider._get_fs_provider`` and exports no public
    counterpart."""
    from litdata.streaming.fs_provider import _get_fs_provider

    return _get_fs_provider(url, storage_options)
