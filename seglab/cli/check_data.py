"""``seglab check-data``: scan every split of an experiment before spending GPU hours on it.

    seglab check-data --config experiments/X.yaml [--data.init_args.root D ...] [--splits train val]

Prints the samples per split and a per-class pixel histogram, notes on how images were converted,
warnings on photo-like masks, then every problem at once, one line each naming its file
(``seglab.data.checks`` does the checking). Exits with status 1 if anything is wrong. It reads the
experiment exactly as ``seglab fit`` does, so the same ``--config`` and overrides check the data
that training would read.
"""

from __future__ import annotations

import sys
from typing import Literal

from lightning.pytorch.cli import LightningArgumentParser

from seglab.cli.experiment import ExperimentCommand
from seglab.data.checks import check_data, format_histogram


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
            reports = check_data(dm, self.config.splits)
        else:  # every split; a dataset need not have a test split
            reports = check_data(dm, ["train", "val", "test"], optional=("test",))
        counted = {s: r.samples for s, r in reports.items() if r.samples is not None}
        print(", ".join(f"{split}: {samples} samples" for split, samples in counted.items()))
        if any(counted.values()):
            print("Pixels per class (ignore_index excluded):")
            print(format_histogram(reports, dm.class_names))
        for split, report in reports.items():
            for note in report.notes:
                print(f"note: [{split}] {note}")
        for split, report in reports.items():
            for warning in report.warnings:
                print(f"warning: [{split}] {warning}", file=sys.stderr)
        problems = [f"[{s}] {p}" for s, r in reports.items() for p in r.problems]
        if problems:
            print(f"\n{len(problems)} problem(s) found:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"\nNo problems in {', '.join(counted)}.")
        return 0
