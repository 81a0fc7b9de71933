"""The ``seglab`` command: LightningCLI's ``fit|validate|test|predict`` and the commands that read
an experiment without training (``check-data cache optimize weights export explain``), one
experiment parser."""

from __future__ import annotations

import sys

from seglab.cli.cache import CacheCommand
from seglab.cli.check_data import CheckDataCommand
from seglab.cli.errors import message_of, user_error
from seglab.cli.experiment import (
    TRAINER_COMMANDS,
    ExperimentCommand,
    SeglabCLI,
    debugging,
)
from seglab.cli.explain import ExplainCommand
from seglab.cli.export import ExportCommand
from seglab.cli.optimize import OptimizeCommand
from seglab.cli.stats import StatsCommand
from seglab.cli.weights import WeightsCommand

COMMANDS: dict[str, type[ExperimentCommand]] = {
    command.name: command
    for command in (
        CheckDataCommand,
        CacheCommand,
        StatsCommand,
        OptimizeCommand,
        WeightsCommand,
        ExportCommand,
        ExplainCommand,
    )
}
USAGE = f"""usage: seglab COMMAND --config experiments/X.yaml [--section.key value ...]

  {" | ".join(TRAINER_COMMANDS):<36} train, evaluate, predict (trainer, model, data options)
  {"check-data | cache":<36} check every split; decode it into data.cache_dir
  {"stats":<36} per-band mean/std of the training split (data.mean/std)
  {"optimize":<36} write the splits as LitData shards (StreamingDataModule)
  {"weights fetch|list":<36} fill or show the pretrained-weights cache
  {"export | explain":<36} ONNX/TorchScript/smp files; Grad-CAM and saliency maps

`seglab COMMAND --help` lists a command's options; SEGLAB_DEBUG=1 shows full tracebacks."""


def main(args: list[str] | None = None) -> SeglabCLI | ExperimentCommand | None:
    """Runs a ``seglab`` command and returns what ran it. A user's mistake (``SeglabError``) ends
    in one or two lines on stderr and ``SystemExit`` with its status (2: usage or configuration,
    1: data or run time); a command that finds problems exits 1."""
    argv = sys.argv[1:] if args is None else list(args)
    command = argv[0] if argv else None
    if command in (None, "-h", "--help"):
        print(USAGE, file=sys.stdout if command else sys.stderr)
        raise SystemExit(0 if command else 2)
    if command not in COMMANDS and command not in TRAINER_COMMANDS:
        known = ", ".join([*TRAINER_COMMANDS, *COMMANDS])
        print(f"seglab: error: unknown command {command!r}; the commands: {known}", file=sys.stderr)
        print("  (usage: seglab --help)", file=sys.stderr)
        raise SystemExit(2)
    try:
        if command in TRAINER_COMMANDS:
            return SeglabCLI(args=args)  # None: LightningCLI reads sys.argv itself
        runner = COMMANDS[command](argv[1:])
        status = runner.run()
        if status:
            raise SystemExit(status)
        return runner
    except Exception as error:
        found = user_error(error)
        if found is None or debugging():
            raise
        print(f"seglab {command}: error: {message_of(found)}", file=sys.stderr)
        raise SystemExit(found.exit_code) from None


def entrypoint() -> None:
    """The ``seglab`` console script (its return value would become the exit status)."""
    main()


__all__ = ["COMMANDS", "ExperimentCommand", "SeglabCLI", "entrypoint", "main"]
