"""The ``seglab`` command: LightningCLI's ``fit|validate|test|predict`` plus seglab's own subcommands."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from seglab import check_data
from seglab.callbacks import BestMetricsTable, Throughput
from seglab.callbacks.checkpointing import AtomicCheckpointIO, ResumeState
from seglab.data import SegmentationDataModule, cache
from seglab.explain.command import main as explain_main
from seglab.inference.export import main as export_main
from seglab.inference.writer import add_prediction_arguments, attach_prediction_writer
from seglab.loggers import SaveAndLogConfig, offline_without_credentials
from seglab.models import SegmentationModule, weights


class SeglabCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The data decides the classes; the model decides what is ignored. Each is set once.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("model.ignore_index", "data.init_args.ignore_index")
        parser.add_lightning_class_args(BestMetricsTable, "best_metrics")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI pre-reads the checkpoint's hyper-parameters with weights_only=True whatever
        # the user said; with an explicit --weights_only false the model comes from the config alone.
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("weights_only") is False:
            return
        super()._parse_ckpt_path()

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        # LightningCLI calls add_arguments_to_parser without the subcommand; predict-only options here.
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            add_prediction_arguments(parser)
        return parser

    def before_predict(self) -> None:
        attach_prediction_writer(self)

    def before_instantiate_classes(self) -> None:
        # W&B without an API key would prompt or raise inside wandb.init: go offline first.
        config = self.config.get(str(self.subcommand), self.config)
        offline_without_credentials(config.get("trainer", {}).get("logger"))

    def _instantiate_trainer(self, config, callbacks):
        # A `trainer.plugins` list from the config or command line (e.g. SLURMEnvironment) replaces
        # trainer_defaults' list; keep the crash-safe writer unless the user chose a CheckpointIO.
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        return super()._instantiate_trainer(config, callbacks)


# Subcommands beyond LightningCLI's; each takes its own argv.
EXTRA_COMMANDS: dict[str, Callable[[list[str]], object]] = {
    "weights": weights.main,
    "check-data": check_data.main,
    "export": export_main,
    "explain": explain_main,
    "cache": cache.main,
}


def main(args: list[str] | None = None) -> SeglabCLI | object:
    """Runs a command and returns what ran it (the ``LightningCLI`` for fit/validate/test/predict)."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[argv[0]](argv[1:])
    try:
        return SeglabCLI(
            SegmentationModule,
            SegmentationDataModule,
            subclass_mode_data=True,
            args=None if args is None else argv,  # None: LightningCLI reads sys.argv itself
            save_config_callback=SaveAndLogConfig,  # config.yaml, and the config to every logger
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            # Always on, in addition to the config's callbacks: RNG in checkpoints, images/s and
            # data-wait fraction in the logs (crash-safe writes: added in _instantiate_trainer).
            trainer_defaults={"callbacks": [ResumeState(), Throughput()]},
        )
    except pickle.UnpicklingError as e:
        raise SystemExit(
            f"{_option(argv, '--ckpt_path') or 'checkpoint'}: refused to load, it holds objects that need arbitrary unpickling "
            f"(loaded with weights_only=True). Only if you trust the file, pass --weights_only false.\n"
            f"torch said: {str(e).splitlines()[0]}"
        ) from None


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in argv."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def entrypoint() -> None:
    """The ``seglab`` console script (its return value would become the exit status)."""
    main()


if __name__ == "__main__":
    entrypoint()
