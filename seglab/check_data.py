"""``seglab check-data --config X.yaml``: scan every split before spending GPU hours on it.

Prints the samples per split and a per-class pixel histogram, notes on converted images, warnings on
photo-like masks, then every problem at once, each naming its file (``seglab.data.checks`` does the
checking). Exits with status 1 if anything is wrong, 2 if the config is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import yaml
from jsonargparse import ArgumentParser

from seglab.data.checks import check_data, format_histogram
from seglab.data.datamodule import SegmentationDataModule


def load_datamodule(config: str | Path) -> SegmentationDataModule:
    """The ``data`` section of an experiment file, instantiated (the model is not built)."""
    config = Path(config)
    if not config.is_file():
        _config_error(f"--config: {config} not found")
    try:
        cfg = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        _config_error(f"{config}: not valid YAML{where}: {getattr(e, 'problem', e)}")
    if not isinstance(cfg, dict) or "data" not in cfg:
        _config_error(f"{config}: has no data section")
    data = cfg["data"]
    ignore_index = (cfg.get("model") or {}).get("ignore_index", 255)
    if isinstance(data, dict):
        data.setdefault("init_args", {})["ignore_index"] = ignore_index
    parser = ArgumentParser(prog="seglab check-data")
    parser.add_subclass_arguments(SegmentationDataModule, "data", required=True)
    namespace = parser.parse_object({"data": data})
    try:
        return parser.instantiate_classes(namespace).data
    except ValueError as e:  # jsonargparse wraps what the data module's __init__ refused
        while e.__cause__ is not None:
            e = e.__cause__
        _config_error(f"{config}: {e}")


def _config_error(message: str) -> NoReturn:
    """A wrong config: one line, exit status 2, no traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="seglab check-data", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--splits", type=list[str] | None, default=None, help="default: all")
    args = parser.parse_args(argv)
    dm = load_datamodule(args.config)
    if args.splits:
        reports = check_data(dm, args.splits)
    else:  # every split; a dataset need not have a test split
        reports = check_data(dm, ["train", "val", "test"], optional=("test",))
    print(
        ", ".join(f"{s}: {r.samples} samples" for s, r in reports.items() if r.samples is not None)
    )
    if any(r.samples for r in reports.values()):
        print("Pixels per class (ignore_index excluded):")
        print(format_histogram(reports, dm.class_names))
    for split, report in reports.items():
        for note in report.notes:
            print(f"note: [{split}] {note}")
    warnings = [f"[{s}] {w}" for s, r in reports.items() for w in r.warnings]
    problems = [f"[{s}] {p}" for s, r in reports.items() for p in r.problems]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print(f"\n{len(problems)} problem(s) found:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        raise SystemExit(1)
    checked = [s for s, r in reports.items() if r.samples is not None]
    print(f"\nNo problems in {', '.join(checked)}.")
    return 0
