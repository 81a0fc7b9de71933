"""``seglab weights fetch|list``: fill and show the pretrained-weights cache, for offline nodes.

seglab weights fetch --config experiments/X.yaml [--model.encoder_name ...]   # on a login node
seglab weights list
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.cli import LightningArgumentParser

from seglab.cli.experiment import ExperimentCommand
from seglab.models.weights import fetch, is_weights_file, list_cached


class WeightsCommand(ExperimentCommand):
    name = "weights"
    description = "Download the encoder weights an experiment needs (fetch), or list the cache."

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "action", type=Literal["fetch", "list"], help="fetch: fill the cache; list: show it"
        )

    def run(self) -> int:
        if self.config.action == "list":
            print("\n".join(list_cached()) or "no cached weights")
            return 0
        name, weights = self.config.model.encoder_name, self.config.model.encoder_weights
        if weights is None or is_weights_file(weights):
            print(f"{name}: nothing to download (model.encoder_weights: {weights})")
            return 0
        fetch(name, weights)
        print(f"cached {name} / {weights}")
        return 0
