"""``seglab check-data``: scan every split of an experiment before spending GPU hours on it.

    seglab check-data --config experiments/X.yaml [--data.init_args.root D ...] [--splits train val]

Reports all problems at once (unreadable, corrupt or truncated images, non-image files, images without
masks and masks without images, size mismatches, mask values that are neither a class id nor
``ignore_index``, wrong channel counts, empty splits), then a per-class pixel histogram. Exits with
status 1 if anything is wrong. It reads the experiment exactly as ``seglab fit`` does, so the same
``--config`` and overrides check the data that training would read.
"""

from __future__ import annotations

import sys
from typing import Literal

from lightning.pytorch.cli import LightningArgumentParser

from seglab.cli.experiment import ExperimentCommand
from seglab.data.checks import check, format_histogram


class CheckDataCommand(ExperimentCommand):
    name = "check-data"
    description = "Scan every split of an experiment and report every problem at once."

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--splits",
            type=list[Literal["train", "val", "test"]] | None,
            default=None,
            help="the splits to check (default: all; a missing test split is no problem)",
        )

    def run(self) -> int:
        dm = self.seglab_datamodule()
        if self.config.splits:
            problems, histograms = check(dm, self.config.splits)
        else:
            problems, histograms = check(dm, ["train", "val", "test"], optional=("test",))
        if histograms:
            print("Pixels per class (ignore_index excluded):")
            print(format_histogram(histograms, dm.class_names))
        if problems:
            print(f"\n{len(problems)} problem(s) found:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"\nNo problems in {', '.join(histograms)}.")
        return 0
