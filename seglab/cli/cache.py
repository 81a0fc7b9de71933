"""``seglab cache``: decode an experiment's splits into ``data.cache_dir`` ahead of training.

seglab cache --config experiments/X.yaml [--data.init_args.cache_dir DIR] [--splits train val]
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.cli import LightningArgumentParser

from seglab.cli.experiment import ExperimentCommand
from seglab.errors import ConfigError


class CacheCommand(ExperimentCommand):
    name = "cache"
    description = "Decode an experiment's splits into data.cache_dir ahead of training."

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--splits",
            type=list[Literal["train", "val", "test"]],
            default=["train", "val"],
            help="the splits to cache",
        )

    def run(self) -> int:
        data = self.seglab_datamodule()
        if not data.cache_dir:
            raise ConfigError(
                "data.init_args.cache_dir is not set; give the cache a directory on local disk "
                "(--data.init_args.cache_dir DIR)"
            )
        for split in self.config.splits:
            cache = data.source(split)  # a DecodedCache, built here if missing or stale
            print(f"{split}: {len(cache)} samples cached in {cache.directory}")
        return 0
