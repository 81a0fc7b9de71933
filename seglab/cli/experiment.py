"""The experiment parser every ``seglab`` command shares.

``SeglabCLI`` is LightningCLI with seglab's contracts: any ``LightningDataModule`` by class path,
the data deciding the classes and the model deciding what is ignored (each set once), a run
directory per experiment with a fixed checkpoint folder, a checked ``--ckpt_path`` (``last``
included), crash-safe checkpoint writes, and one-line errors for configuration mistakes.
``ExperimentCommand`` reuses the same parser for the commands that read an experiment without
training (``check-data``, ``cache``, ``weights``, ``export``, ``explain``).
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from seglab.callbacks import BestMetricsTable, Throughput
from seglab.callbacks.checkpointing import AtomicCheckpointIO, ResumeState, finish_wandb_run
from seglab.callbacks.distributed import UnusedParameters
from seglab.callbacks.nonfinite import NonFiniteLoss
from seglab.cli.config import entries_of
from seglab.cli.loggers import (
    SaveAndLogConfig,
    continue_identity,
    offline_without_credentials,
    read_identity,
    record_identity,
    skip_logged_steps,
    upload_command,
)
from seglab.cli.messages import notice
from seglab.cli.migration import MOVED_SETTINGS, old_form_hint, old_form_value
from seglab.cli.runs import (
    checkpoint_directories,
    default_checkpoint,
    find_last_checkpoint,
    read_checkpoint,
    run_directory,
)
from seglab.compat import (
    INSTANTIATOR_KEY,
    LightningCLIHooks,
    checkpoint_metrics_step,
    continue_csv_metrics,
    recording_config,
    wandb_offline,
)
from seglab.data import SegmentationDataModule
from seglab.errors import CheckpointError, ConfigError, SeglabError
from seglab.inference.writer import PredictionWriter
from seglab.models import SegmentationModule

# Hyper-parameters a checkpoint holds that are not the model's arguments: Lightning's rebuilder, the
# evaluation-time inference settings, the palette (restored by
# SegmentationModule.on_load_checkpoint).
RECORDED_ELSEWHERE = (INSTANTIATOR_KEY, "inference", "palette")
DEBUG_VARIABLE = "SEGLAB_DEBUG"  # set to 1 for full tracebacks and parser messages
# Without --config or --data, prediction reads --data.predict_dir with the base data module.
DEFAULT_DATA = "seglab.data.SegmentationDataModule"
TRAINER_COMMANDS = ("fit", "validate", "test", "predict")


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def condense_parse_error(message: str) -> str:
    """jsonargparse's message for a bad value, cut to the option and the decisive reason: for a
    value that fits none of a union's types, the problem with the class that was named."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return message
    key = re.match(r'Parser key "([^"]+)":?(.*)', lines[0])
    if key is None:
        return lines[0]
    option, rest = key.group(1), key.group(2).strip()
    if rest.endswith(":"):  # 'Parser key "formats" element 1:' then the reason
        option, rest = f"{option} {rest[:-1]}", ""
    reasons = [line for line in lines[1:] if not line.startswith(("Subtypes:", "Given value"))]
    for i, line in enumerate(reasons):
        if line.startswith("- Problem with given class_path"):
            detail = reasons[i + 1] if i + 1 < len(reasons) else ""
            if detail.startswith("Parser key"):  # a bad init_args value: name it and say why
                nested = [r for r in reasons[i + 1 :] if not r.startswith("- Expected a <class")]
                return f"{option}.{condense_parse_error(chr(10).join(nested))}"
            return f"{option}: {line[2:]} {detail}".strip()
    reasons = [r for r in reasons if r not in ("Errors:",) and not r.startswith("- Expected a")]
    reason = rest or (reasons[0].removeprefix("- ") if reasons else lines[-1])
    if reason.startswith("Does not validate against any of the Union subtypes"):
        expected = [line.removeprefix("- ") for line in lines if line.startswith("- Expected")]
        reason = "; ".join(expected) or reason
        given = next((line for line in lines if line.startswith("Given value:")), None)
        if given is not None:
            reason += f" ({given.lower()})"
    return f"{option}: {reason}"


class SeglabParser(LightningArgumentParser):
    """Reports a bad value in two lines (the option and the reason, then where help is) instead
    of the full usage and jsonargparse's nested message; ``SEGLAB_DEBUG=1`` shows everything."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        if debugging() or not self.exit_on_error:
            super().error(message, ex)
        prog = self.prog.replace(" [options]", "")  # jsonargparse's name of a subcommand parser
        reason = old_form_hint(message) or condense_parse_error(message)
        sys.stderr.write(f"{prog}: error: {reason}\n  (options: {prog} --help)\n")
        self.exit(2)


class SeglabCLI(LightningCLIHooks):
    """``seglab fit|validate|test|predict``: LightningCLI with seglab's experiment contracts.

    Args:
        args: the command line after ``seglab`` (None: ``sys.argv``).
        run: run the subcommand (``False``: parse and build only, as ``LightningCLI(run=False)``).
        parser_kwargs: passed to the parsers (``prog``, ``description``).
    """

    seed_default: ClassVar[bool | int] = True  # Lightning's: a random seed, printed

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        parser_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.argv = list(sys.argv[1:] if args is None else args)
        self.from_checkpoint: Path | None = None  # the checkpoint the model settings came from
        self.resume_step: int | None = None  # where a resumed fit's metrics continue
        self.built_data: L.LightningDataModule | None = None
        try:
            self._start(args, run, parser_kwargs)
        except SIGTERMException:
            self._stopped()

    def _start(
        self, args: list[str] | None, run: bool, parser_kwargs: dict[str, Any] | None
    ) -> None:
        super().__init__(
            SegmentationModule,
            L.LightningDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveAndLogConfig,  # config.yaml, and the config to every logger
            save_config_kwargs={"overwrite": True},
            parser_class=SeglabParser,
            parser_kwargs={"prog": "seglab", **(parser_kwargs or {})},
            auto_configure_optimizers=False,
            # The checkpoint records the module's real arguments (classes from the data included),
            # not the parsed config: SegmentationModule.load_from_checkpoint rebuilds it alone.
            load_from_checkpoint_support=False,
            args=None if args is None else self.argv,  # None: LightningCLI reads sys.argv itself
            run=run,
            seed_everything_default=self.seed_default,
        )

    def _stopped(self) -> None:
        """A run stopped by a signal (``ResumeState``): ``fit`` saved ``last.ckpt`` and printed
        the resume command, and exits 0; an evaluation or prediction is incomplete: exit 1."""
        subcommand = self.config.get("subcommand") if hasattr(self, "config") else None
        if subcommand in (None, "fit"):
            raise SystemExit(0)
        state = next(
            (c for c in getattr(self.trainer, "callbacks", []) if isinstance(c, ResumeState)), None
        )
        name = (state.stop_signal if state else None) or "a signal"
        what = "predictions" if subcommand == "predict" else "metrics"
        notice(
            f"seglab {subcommand}: stopped by {name} before the end; the {what} are incomplete "
            "(run the same command again)"
        )
        raise SystemExit(1)

    # --- parsing -------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"data": {"class_path": DEFAULT_DATA}})
        # The model decides what is ignored, once; data modules that take ignore_index follow it.
        parser.link_arguments("model.ignore_index", "data.init_args.ignore_index")

    def add_subcommand_arguments(self, parser: LightningArgumentParser, subcommand: str) -> None:
        if subcommand == "predict":  # where and what seglab.inference.PredictionWriter writes
            parser.add_argument(
                "--output_dir", type=str | None, default=None, help="write predictions here"
            )
            parser.add_argument("--overwrite", type=bool, default=False, help="replace outputs")
            parser.add_argument("--save_color", type=bool, default=False, help="a palette PNG")
            parser.add_argument("--save_overlay", type=bool, default=False, help="an overlay")
            parser.add_argument(
                "--save_probabilities",
                type=Literal["npy", "pt"] | None,
                default=None,
                help="per-class probabilities (float16)",
            )
            parser.add_argument(
                "--probabilities_dtype",
                type=Literal["uint8", "float16"],
                default="uint8",
                help="streamed images' probability TIFFs: uint8 (0-255) or float16",
            )
            parser.add_argument(
                "--cog", type=bool, default=False, help="streamed GeoTIFFs as Cloud-Optimized"
            )

    def experiment(self) -> Namespace:
        """The parsed configuration of the command that runs (the subcommand's, for fit etc.)."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def resume_command(self) -> str:
        """The command that resumes this run: the same line with ``--ckpt_path last``."""
        argv, skip = [], False
        for arg in self.argv:
            if skip:
                skip = False
            elif arg == "--ckpt_path":
                skip = True
            elif not arg.startswith("--ckpt_path="):
                argv.append(arg)
        return shlex.join(["seglab", *argv, "--ckpt_path", "last"])

    # --- the checkpoint ------------------------------------------------------------------------
    def apply_checkpoint(self) -> None:
        """Resolves ``--ckpt_path`` (``last``: the newest ``last.ckpt`` of this experiment's run
        directory), checks that the file is a readable checkpoint (errors name it), and takes the
        model's settings from it: the network, classes and parts it was trained with (its encoder
        weights are in the file: nothing is downloaded), and its normalisation for the data."""
        config = self.experiment()
        ckpt_path = self._checkpoint_file(config)
        if ckpt_path is None:
            return
        checkpoint = read_checkpoint(ckpt_path, config.get("weights_only"))
        self.resume_step = checkpoint_metrics_step(checkpoint)
        settings, dropped = recorded_model_settings(checkpoint.get("hyper_parameters", {}))
        if dropped:
            notice(
                f"seglab: {ckpt_path} records model settings this version no longer takes, left "
                f"out: {'; '.join(dropped)}"
            )
        if not settings:
            return
        self.from_checkpoint = Path(ckpt_path)
        if replaced := replaced_settings(config.get("model"), settings):
            notice(
                f"seglab: the model is the one of {ckpt_path}; its settings replace the configured "
                f"ones: {', '.join(replaced)}"
            )
        self._set_model_settings(settings, ckpt_path)
        follow_model_normalization(self.experiment(), settings)

    def _checkpoint_file(self, config: Namespace) -> Path | None:
        """The checkpoint file ``--ckpt_path`` names, ``last`` resolved; None for none and for
        Lightning's own ``hpc`` (a SLURM requeue checkpoint) and ``best`` (of this fit)."""
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in (None, "hpc", "best"):
            return None
        if ckpt_path == "last":
            ckpt_path = self._resolve_last(config)
            config["ckpt_path"] = None if ckpt_path is None else str(ckpt_path)
        return None if ckpt_path is None else Path(ckpt_path)

    def _set_model_settings(self, settings: dict[str, Any], ckpt_path: Path) -> None:
        # A recorded dict (a class spec, model_kwargs) replaces the configured one whole: merged
        # into it, its keys would mix with the configured ones (another loss, another network).
        model = self.experiment().get("model")
        for key, value in settings.items():
            if isinstance(value, dict) and model is not None:
                model[key] = None
        try:
            subcommand = self.config.get("subcommand")
            update = {subcommand: {"model": settings}} if subcommand else {"model": settings}
            self.config = self.parser.parse_object(update, self.config)
        except (SystemExit, Exception) as e:
            raise CheckpointError(
                f"--ckpt_path: the model settings recorded in {ckpt_path} do not fit this version "
                f"of seglab ({condense_parse_error(str(e)) or 'rejected by the parser'})"
            ) from None

    def _resolve_last(self, config: Namespace) -> Path | None:
        run_dir = run_directory(config)
        directories = checkpoint_directories(config, run_dir) or [run_dir / "checkpoints"]
        found = find_last_checkpoint(directories)
        where = ", ".join(str(d) for d in directories)
        if found is not None:
            notice(f"seglab: --ckpt_path last: {found}")
        elif self.config.get("subcommand") == "fit":
            notice(f"seglab: --ckpt_path last: nothing to resume in {where}; starting a new run")
        else:
            raise CheckpointError(
                f"--ckpt_path last: no last.ckpt in {where}; train first (seglab fit with the same "
                "--config) or give a checkpoint file"
            )
        return found

    # --- building ------------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        config = self.experiment()
        self.run_dir = run_directory(config)
        config.trainer.default_root_dir = str(self.run_dir)
        self.checkpoint_dirs = checkpoint_directories(config, self.run_dir)
        for _, init_args in entries_of(config.trainer.get("logger"), WandbLogger):
            # WandbLogger's default save_dir "." would put the run outside its run directory
            if init_args is not None and init_args.get("save_dir") in (None, "", "."):
                init_args["save_dir"] = str(self.run_dir)
        if self.config.get("subcommand") == "fit":
            # One run across resumes: a resumed fit continues the loggers' recorded identity.
            resuming = config.get("ckpt_path") is not None
            continued = continue_identity(config.trainer.get("logger"), self.run_dir, resuming)
            if continued:
                notice(f"seglab: the resumed run continues {', '.join(continued)}")
        # W&B without an API key would prompt or raise inside wandb.init: go offline first.
        offline_without_credentials(config.trainer.get("logger"))
        if self.config.get("subcommand") == "fit":
            self._announce_run(config)
        # The data is built first and decides the classes of the model built after it.
        self.parser.add_instantiator(self._build_data, L.LightningDataModule, subclasses=True)
        self.parser.add_instantiator(self._build_model, SegmentationModule, subclasses=True)

    def _announce_run(self, config: Namespace) -> None:
        directories = self.checkpoint_dirs or [self.run_dir / "checkpoints"]
        notice(f"seglab: run directory {self.run_dir} (checkpoints in {directories[0]})")
        if config.get("ckpt_path") is None and find_last_checkpoint(directories) is not None:
            notice(
                f"seglab: {directories[0]} holds the checkpoints of an earlier run; this run "
                "replaces its last.ckpt (to continue that run instead, add --ckpt_path last)"
            )

    def _build_data(self, cls: type, *args: Any, **kwargs: Any) -> L.LightningDataModule:
        self.built_data = cls(*args, **kwargs)
        return self.built_data

    def _build_model(self, cls: type, *args: Any, **kwargs: Any) -> SegmentationModule:
        """The model, after the data: the data decides its classes. It records the parsed config
        of its injected parts (network, loss, optimizer, schedule) for ``load_from_checkpoint``."""
        if self.built_data is not None:
            link_classes(kwargs, self.built_data, self.from_checkpoint)
            link_in_channels(kwargs, self.built_data)
        dump = self.parser.dump(
            self.config, skip_link_targets=False, skip_none=False, format="yaml"
        )
        dump = yaml.safe_load(dump)
        recorded = (dump[self.subcommand] if self.subcommand else dump)["model"]
        linked = ("num_classes", "class_names", "in_channels")
        recorded.update({k: kwargs[k] for k in linked if k in kwargs})
        with recording_config(recorded):
            return cls(*args, **kwargs)

    def command_callbacks(self) -> list[L.Callback]:
        """What the command adds to the trainer's callbacks, each unless the config has one of its
        type: RNG in checkpoints and a resume hint on SIGTERM, images/s and the data-wait fraction,
        a stop on a non-finite loss, the run directory's checkpoints, the best metrics printed at
        the end, parameters without gradients named before DDP training, and for
        ``predict --output_dir`` the prediction files."""
        callbacks = [
            ResumeState(resume_command=self.resume_command()),
            Throughput(),
            NonFiniteLoss("stop"),
            BestMetricsTable(),
            UnusedParameters(),
        ]
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        if config.get("trainer", {}).get("enable_checkpointing") is not False:
            callbacks.append(default_checkpoint(self.run_dir))
        if self.subcommand == "predict" and config.get("output_dir"):
            callbacks.append(
                PredictionWriter(
                    config["output_dir"],
                    overwrite=config["overwrite"],
                    color=config["save_color"],
                    overlay=config["save_overlay"],
                    probabilities=config["save_probabilities"],
                    probabilities_dtype=config["probabilities_dtype"],
                    cog=config["cog"],
                )
            )
        return callbacks

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        config = init.get("trainer") or {}
        # Crash-safe checkpoint writes, unless the user chose a CheckpointIO (a `trainer.plugins`
        # list from the config or command line replaces the defaults' list).
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs.setdefault("plugins", plugins)
        callbacks = config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        kinds = tuple(type(c) for c in callbacks)
        callbacks += [c for c in self.command_callbacks() if not isinstance(c, kinds)]
        kwargs.setdefault("callbacks", callbacks)
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as e:  # accelerator gpu without one ...
            if isinstance(e, SeglabError):
                raise
            raise ConfigError(f"trainer: {e} (check the --trainer.* settings)") from None

    def before_fit(self) -> None:
        """Rank zero records the loggers' identity of a new run in the run directory; a resumed
        run continues the CSV file (rows past the checkpoint dropped: they are logged again) and
        logs no W&B step twice. Offline W&B: the command that uploads the run, every part."""
        if rank_zero_only.rank != 0:
            return
        loggers = self.trainer.loggers
        resuming = self.experiment().get("ckpt_path") is not None
        if not resuming or not read_identity(self.run_dir):
            record_identity(loggers, self.run_dir)
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                offline = wandb_offline(logger)
                if resuming:
                    skip_logged_steps(logger, offline)
                if offline:
                    command = upload_command(logger)
                    notice(f"W&B: offline; upload this run, every part of it, with `{command}`")
            elif resuming and isinstance(logger, CSVLogger) and self.resume_step is not None:
                continue_csv_metrics(logger, self.resume_step)

    def after_fit(self) -> None:
        """The W&B run ends with the fit (its closing lines before seglab's last ones), so that a
        later fit in the same process is a run of its own, not this one continued."""
        if rank_zero_only.rank == 0:
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger):
                    finish_wandb_run(logger)

    def before_predict(self) -> None:
        """``--save_probabilities`` asks the model for probabilities too; with ``--output_dir``
        (``PredictionWriter``) predictions are written batch by batch, not kept in memory."""
        config = self.config_init["predict"]
        if config.get("save_probabilities"):
            self.model.inference = replace(self.model.inference, output="probabilities")
        if config.get("output_dir") and config.get("return_predictions") is None:
            config["return_predictions"] = False


def _plain(value: Any) -> Any:
    """A parsed value as plain lists and dicts, to compare configured and recorded settings."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recorded_model_settings(saved: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The model settings a checkpoint's hyper-parameters record that this version takes, and what
    it leaves out (settings of earlier versions, each with where it went). The encoder weights are
    in the checkpoint: nothing is downloaded."""
    known = inspect.signature(SegmentationModule.__init__).parameters
    settings, dropped = {}, []
    for key, value in saved.items():
        if key in RECORDED_ELSEWHERE:
            continue
        if key in known and not old_form_value(key, value):
            settings[key] = value
        elif key in MOVED_SETTINGS or key in known:
            dropped.append(f"{key}={value!r} (now {MOVED_SETTINGS.get(key, 'a class')})")
        else:
            dropped.append(f"{key}={value!r}")
    if settings:
        settings["encoder_weights"] = None
    return settings, dropped


def replaced_settings(configured: Namespace | None, recorded: dict[str, Any]) -> list[str]:
    """``key configured -> recorded`` for each model setting the user configured that the
    checkpoint's differs from (unset settings are no conflict)."""
    if configured is None:
        return []
    replaced = []
    for key, value in recorded.items():
        mine = configured.get(key)
        if key == "encoder_weights" or mine is None:
            continue
        if _plain(mine) != _plain(value):
            replaced.append(f"{key} {_plain(mine)!r} -> {_plain(value)!r}")
    return replaced


def follow_model_normalization(config: Namespace, settings: dict[str, Any]) -> None:
    """The data is normalised as the model was trained, unless the data's options say otherwise
    (then SegmentationModule refuses the difference)."""
    data = config.get("data", {}).get("init_args") or {}
    for key in ("mean", "std"):
        if key in data and data[key] is None and settings.get(key) is not None:
            data[key] = tuple(settings[key])


def link_classes(model_kwargs: dict[str, Any], data: object, checkpoint: Path | None) -> None:
    """The data decides the classes: ``model.num_classes`` and ``model.class_names`` are taken from
    the data module when it has them (a data module without them leaves them to the model's
    options). A value on both sides that differs is refused: set it once."""
    source = f" (recorded in {checkpoint})" if checkpoint is not None else ""
    for key in ("num_classes", "class_names"):
        value = getattr(data, key, None)
        if value is None:
            continue
        value = list(value) if key == "class_names" else value
        given = model_kwargs.get(key)
        if given is None:
            model_kwargs[key] = value
        elif (list(given) if key == "class_names" else given) != value:
            raise ConfigError(
                f"model.{key} is {given!r}{source} but the data module "
                f"{type(data).__name__} has {key} {value!r}: the classes are set once, on the data"
            )
    if model_kwargs.get("num_classes") is None:
        raise ConfigError(
            f"model.num_classes: {type(data).__name__} has no num_classes attribute; "
            "set --model.num_classes"
        )


def link_in_channels(model_kwargs: dict[str, Any], data: object) -> None:
    """The data decides the input bands: a data module with ``in_channels`` (seglab's: one per
    ``data.mean`` value) sets ``model.in_channels`` when that is left at its default of 3; another
    value that differs is refused."""
    value = getattr(data, "in_channels", None)
    if not isinstance(value, int):
        return
    given = model_kwargs.get("in_channels", 3)
    if given == 3:
        model_kwargs["in_channels"] = value
    elif given != value:
        raise ConfigError(
            f"model.in_channels is {given} but the data module {type(data).__name__} gives "
            f"{value} bands (one per data.mean value): set the bands once, on the data"
        )


class ExperimentCommand(SeglabCLI):
    """A command that reads an experiment as ``fit`` does (``--config`` and the same
    ``--trainer.* --model.* --data.*`` overrides and links) but builds only what it needs."""

    name: ClassVar[str]
    description: ClassVar[str]
    seed_default: ClassVar[bool | int] = 0  # a checkpoint alone (no --config) gives no seed

    def __init__(self, args: list[str]) -> None:
        # The command's own arguments are sys.argv[2:]; LightningCLI warns whenever sys.argv has
        # arguments besides the ones it is given, a warning meant for notebooks, not for this.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")
            super().__init__(
                args=args,
                run=False,
                parser_kwargs={"prog": f"seglab {self.name}", "description": self.description},
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        """The command's own options."""

    def before_instantiate_classes(self) -> None:
        self.run_dir = run_directory(self.config)

    def instantiate_classes(self) -> None:
        """Nothing is built until the command asks (``datamodule()``)."""

    def datamodule(self) -> L.LightningDataModule:
        """The configured data module, alone (no model, no trainer)."""
        data_only = Namespace(data=self.config.data)
        return self.parser.instantiate(data_only, instantiate_groups=False).data

    def seglab_datamodule(self) -> SegmentationDataModule:
        """The configured data module, which must be one of seglab's (they expose their splits)."""
        data = self.datamodule()
        if not isinstance(data, SegmentationDataModule):
            raise ConfigError(
                f"data: seglab {self.name} reads seglab's data modules (SegmentationDataModule "
                f"subclasses), not {type(data).__name__}"
            )
        return data

    def trained_module(self) -> SegmentationModule:
        """The model of ``--ckpt_path`` (resolved and checked when parsed), on the CPU."""
        return SegmentationModule.load_from_checkpoint(
            self.config.ckpt_path, map_location="cpu", encoder_weights=None
        )

    def run(self) -> int:
        """Does the command's work; returns the exit status."""
        raise NotImplementedError
