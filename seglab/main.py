"""The ``seglab`` command: LightningCLI's ``fit|validate|test|predict`` plus seglab's own subcommands."""

from __future__ import annotations

import sys
from collections.abc import Callable

from lightning.pytorch.cli import LightningCLI

from seglab.callbacks import BestMetricsTable
from seglab.data import SegmentationDataModule
from seglab.models import SegmentationModule


class SeglabCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The data decides the classes; the model decides what is ignored. Each is set once.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("model.ignore_index", "data.init_args.ignore_index")
        parser.add_lightning_class_args(BestMetricsTable, "best_metrics")


# Subcommands beyond LightningCLI's; each takes its own argv.
EXTRA_COMMANDS: dict[str, Callable[[list[str]], object]] = {}


def main(args: list[str] | None = None) -> SeglabCLI | object:
    """Runs a command and returns what ran it (the ``LightningCLI`` for fit/validate/test/predict)."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[argv[0]](argv[1:])
    return SeglabCLI(
        SegmentationModule,
        SegmentationDataModule,
        subclass_mode_data=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def entrypoint() -> None:
    """The ``seglab`` console script (its return value would become the exit status)."""
    main()


if __name__ == "__main__":
    entrypoint()
