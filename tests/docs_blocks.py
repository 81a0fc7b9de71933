"""The code blocks of the README and of every page under ``docs/``, and the substitutions that let
them run here, on tiny generated data, as a reader types them.

What runs (``tests/test_docs_commands.py``, ``tests/test_docs_code.py``):

- every line of a fenced ``bash`` (or ``sh``, ``shell``, ``console``) block: continuation lines
  joined, comments cut, ``a && b`` as two commands. ``seglab ...`` runs in-process
  (``seglab.cli.main``), in the page's order; any other command, and a ``seglab`` command that
  needs what this machine has not (an object store), must match ``NOT_RUN``, which says why it
  does not run here and which test covers it instead. A command that is neither fails.
- every fenced ``python`` block: a page's blocks in order, in one namespace, as written (so keep
  them small: a few steps on tiny images); on the pages of ``RUN_IN_PAGE_ORDER``, whose blocks
  and commands use each other's files, between the commands in the page's order, with the
  quoted paths of ``places`` substituted.
- every fenced ``yaml`` block whose top-level keys are experiment sections: parsed as an experiment
  (``--print_config``), alone when it has a model and a data section, else on top of the
  quickstart (``--config quickstart.yaml --config block.yaml``); every value it writes must be
  the resolved config's.

Other blocks (``text``, output) do not run. A page is found by the glob: a new guide under
``docs/guides/`` is covered without a change here.

Substitutions, and nothing else changes:

- where a page starts: a directory of its own, with ``experiments/`` (a link to the repository's)
  and ``outputs/quickstart/``, a tiny quickstart run trained once per session: where a reader of
  any guide stands after "Getting started";
- placeholders: ``experiments/X.yaml`` is the quickstart; ``[--section.key value ...]`` is left
  out, other ``[...]`` options are given; the paths in ``places`` (``my_dataset``, ``my_images``,
  ``/data/voc``, ``/data/inria``, ``a.png``, ``scene.tif``, ``last.ckpt`` ...) are files generated
  in the real layouts (``tests/data/datasets/fixtures.py``, ``write_inria``, ``write_raster``);
  ``experiments/my_rasters.yaml`` is the quickstart's model on a generated folder of 4-band
  uint16 GeoTIFFs (``RasterDataModule``); ``--class car`` names a class of the quickstart's model
  (``circle``), which has no car;
- sizes (``tiny_sizes``): every command that trains or evaluates gets a few steps, 64 px images,
  small batches, no data workers and no logger appended (raster recipes: 32 px validation windows),
  and ``check-data``, ``cache``, ``stats`` and ``optimize`` the same data sizes (``optimize``: one
  writer process); options the line itself sets stay as it sets them;
- no network and no GPU: pretrained weights (``imagenet`` on the line or in a recipe) are a
  weights file written here; ``--trainer.devices 4`` runs 2 CPU processes (for two steps each);
  ``seglab weights fetch`` of a recipe with pretrained weights must fail in one line naming what to
  do (HF_HUB_OFFLINE=1: the documented offline behaviour).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"

SHELL_FENCES = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", flags=re.S | re.M)


def pages() -> list[Path]:
    """The README and every Markdown page of the site."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def blocks(page: Path, *languages: str) -> list[str]:
    """The page's fenced blocks of these languages, in order."""
    return [body for lang, body in FENCE.findall(page.read_text()) if lang in languages]


def pages_with(*languages: str) -> list[Path]:
    return [page for page in pages() if blocks(page, *languages)]


def block_commands(block: str) -> list[str]:
    """The commands of one shell block: continuation lines joined, comments and ``$ `` prompts
    cut, ``a && b`` split, blank lines left out."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip().removeprefix("$ ")
        commands += [" ".join(part.split()) for part in line.split(" && ") if part.strip()]
    return commands


def shell_commands(page: Path) -> list[str]:
    """The commands of the page's shell blocks (``block_commands``), in order."""
    return [c for block in blocks(page, *SHELL_FENCES) for c in block_commands(block)]


# Pages whose Python blocks and shell commands use each other's files (a block writes the image a
# command predicts, or reads what it wrote): their Python blocks run with the commands, in the
# page's order and directory (tests/test_docs_commands.py), not in tests/test_docs_code.py.
RUN_IN_PAGE_ORDER = {"docs/guides/huge-images.md", "docs/guides/rasters.md"}


def steps(page: Path) -> list[tuple[str, str]]:
    """``("shell", command)`` and ``("python", block)`` of the page, in the page's order."""
    found: list[tuple[str, str]] = []
    for lang, body in FENCE.findall(page.read_text()):
        if lang in SHELL_FENCES:
            found += [("shell", command) for command in block_commands(body)]
        elif lang == "python":
            found.append(("python", body))
    return found


# Commands that do not run here: the pattern (matched at the start of the command, after any
# VAR=value assignments) and why, naming the test that covers it instead.
NOT_RUN = {
    r"pip install": "installs seglab: the tests run in the environment it installed",
    r"python -m venv|\. \.venv/bin/activate": "makes the environment the tests run in",
    r"ruff (check|format)": "CI's lint steps (.ci/run), which run before this suite",
    r"pytest": "this suite itself",
    r"mkdocs (build|serve)": "tests/test_docs_site.py builds the site (--strict)",
    r"wandb (sweep|agent|sync|login)": "needs a W&B server and account; tests/test_sweeps.py runs "
    "a sweep trial's seglab command",
    r"sbatch": "needs SLURM; tests/test_launch.py runs slurm.sbatch with a simulated SLURM",
    r"experiments/launch/torchrun\.sh": "needs GPUs or nodes; tests/test_launch.py runs it as two "
    "simulated nodes",
    r"docker": "needs Docker; tests/test_docker.py lints the Dockerfile and checks its parts",
    r"magick": "ImageMagick, not seglab",
    r"python bench/\S+|bash bench/\S+": "benchmarks take minutes; tests/test_gpu_check.py runs "
    "every part of bench/gpu_check.sh small, tests/test_bench_*.py the others",
    r"seglab \w+ .*\b(s3|gs|r2)://\S+.*": "needs an object store and its credentials; "
    "tests/data/test_streaming.py::test_optimize_to_and_stream_from_an_s3_url does both on a "
    "local S3 server (moto)",
}


def not_run(command: str) -> str | None:
    """Why a command does not run here, or None when nothing says so (a ``seglab`` command then
    runs)."""
    program = re.sub(r"^(\w+=\S*\s+)*", "", command)
    for pattern, why in NOT_RUN.items():
        if re.match(rf"(?:{pattern})(\s|$)", program):
            return why
    return None


def tiny_sizes(argv: list[str]) -> list[str]:
    """The size options appended to a command that trains or evaluates, minus those it sets."""
    data = argv[argv.index("--config") + 1] if "--config" in argv else ""
    sizes = {
        "--trainer.max_steps": "2",
        "--trainer.max_epochs": "1",
        "--trainer.logger": "false",
        "--trainer.enable_progress_bar": "false",
        "--trainer.accelerator": "cpu",
        "--data.init_args.batch_size": "2",
        "--data.init_args.eval_batch_size": "1",
        "--data.init_args.num_workers": "0",
    }
    if "--data" in argv:  # another data module, by class path: its own options
        sizes = {k.replace("init_args.", ""): v for k, v in sizes.items()}
    elif data.endswith("quickstart.yaml"):
        sizes |= {"--data.init_args.image_size": "64", "--data.init_args.crop_size": "64"}
        sizes |= {"--data.init_args.num_train": "4", "--data.init_args.num_val": "2"}
        sizes |= {"--data.init_args.num_test": "2"}
    elif data:  # a dataset recipe on a miniature copy of the dataset
        sizes |= {"--data.init_args.crop_size": "32"}
        if "eval_window" in (yaml.safe_load(Path(data).read_text())["data"].get("init_args") or {}):
            sizes |= {"--data.init_args.eval_window": "32"}  # raster recipes: validation windows
    extra = []
    for option, value in sizes.items():
        if option not in argv and not any(a.startswith(option + "=") for a in argv):
            extra += [option, value]
    return extra


# Values that follow an option: (option, value as written) -> the value here.
VALUE_SWAPS = {
    ("--class", "car"): "circle",
    ("--trainer.devices", "4"): "2",
}


def substituted(command: str, places: dict[str, str], weights: dict[str, str]) -> list[str]:
    """The argv (without the program name) of a ``seglab`` command, with the substitutions."""
    command = command.replace(" [--section.key value ...]", "")
    command = re.sub(r"\[(--[^\]]+)\]", r"\1", command)  # optional options, given
    argv = shlex.split(command)[1:]
    out: list[str] = []
    for token in argv:
        option, eq, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if eq:  # --option=value
            out.append(f"{option}={places.get(value, value)}")
            continue
        if out and (out[-1], token) in VALUE_SWAPS:
            out.append(VALUE_SWAPS[out[-1], token])
            continue
        out.append(places.get(token, token))
    argv = out
    asks_help = any(a == "--help" or a.endswith(".help") for a in argv)
    if argv[0] in ("fit", "validate", "test", "predict") and not asks_help:
        if "--trainer.devices" in argv:  # two steps on each process: DDP checks from the second
            argv += ["--data.init_args.num_train", "8"]
        argv += tiny_sizes(argv)
    elif argv[0] in ("check-data", "cache", "stats", "optimize") and not asks_help:
        sizes = tiny_sizes(argv)  # they read every sample
        for option_, value in zip(sizes[::2], sizes[1::2], strict=True):
            if option_.startswith("--data."):
                argv += [option_, value]
        if argv[0] == "optimize" and "--num_workers" not in argv:
            argv += ["--num_workers", "1"]  # one writer process, not four
    return pretrained_weights_here(argv, weights)


def option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def pretrained_weights_here(argv: list[str], weights: dict[str, str]) -> list[str]:
    """``imagenet`` weights, asked for on the line or by the recipe, are a local weights file of the
    same encoder (``weights fetch`` is left as it is: it is the offline check)."""
    if argv[0] not in ("fit", "validate", "test", "predict"):
        return argv
    recipe = option(argv, "--config")
    model = yaml.safe_load(Path(recipe).read_text()).get("model", {}) if recipe else {}
    encoder = option(argv, "--model.encoder_name") or model.get("encoder_name")
    asked = option(argv, "--model.encoder_weights")
    if asked is None and model.get("encoder_weights") and encoder in weights:
        return [*argv, "--model.encoder_weights", weights[encoder]]
    if asked == "imagenet":
        assert encoder in weights, f"add a weights file for {encoder} to the weights fixture"
        i = argv.index("--model.encoder_weights") + 1
        return [*argv[:i], weights[encoder], *argv[i + 1 :]]
    return argv


def experiment_blocks(page: Path) -> list[str]:
    """The page's YAML blocks that are (parts of) experiment files."""
    sections = {"seed_everything", "trainer", "model", "data", "ckpt_path"}
    found = []
    for block in blocks(page, "yaml"):
        parsed = yaml.safe_load(block)
        if isinstance(parsed, dict) and parsed and set(parsed) <= sections:
            found.append(block)
    return found


def python_with_places(block: str, places: dict[str, str]) -> str:
    """A Python block with its quoted placeholder paths replaced."""
    for old, new in places.items():
        block = block.replace(f'"{old}"', repr(new)).replace(f"'{old}'", repr(new))
    return block
