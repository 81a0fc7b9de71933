"""``seglab stats``: per-band normalisation statistics of an experiment's training split.

    seglab stats --config experiments/X.yaml [--data.init_args.root D ...]

Prints the per-band ``mean`` and ``std`` of ``value / 255`` over the labelled pixels of the
training splits (``seglab.data.stats.band_statistics``; the scaling rule is
``seglab.data.normalize``'s) as the lines to put under ``data.init_args`` of the experiment.
Images that are not 3-band ``uint8`` need them: training refuses such data without.
"""

from __future__ import annotations

from seglab.cli.experiment import ExperimentCommand
from seglab.data.stats import band_statistics


class StatsCommand(ExperimentCommand):
    name = "stats"
    description = "Per-band mean/std of the training split, for data.mean and data.std."

    def run(self) -> int:
        data = self.seglab_datamodule()
        mean, std = band_statistics(data.statistics_dataset(), num_workers=data.num_workers)
        splits = ", ".join(data.train_splits)
        print(f"# per-band statistics of value / 255 over the labelled pixels of {splits}")
        print("data:\n  init_args:")
        print(f"    mean: [{', '.join(f'{v:.6g}' for v in mean)}]")
        print(f"    std: [{', '.join(f'{v:.6g}' for v in std)}]")
        return 0
