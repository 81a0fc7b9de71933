"""One prepared check of seglab's CUDA paths, for the minutes a GPU is lent (bench/gpu_check.sh).

    python bench/gpu_check.py [--device cuda] [--quick] [--out DIR] [--budget 450] [--only PART ...]

Parts: the environment; the ``cuda``-marked tests; the step-overhead table (UNet-ResNet34 at
512x512, batch 16: fp32, bf16-mixed, + channels-last, + compile; SegFormer-MiT-B0 in bf16);
sliding-window inference of a 1024x2048 image with 512 px tiles; the data path (loader throughput,
``augment_on_device``, the data-wait fraction of a short training run). ``--quick`` runs every
part at toy sizes (on the CPU: the dry run that proves the script before a GPU is lent).

Each part runs in a forked process (the libraries are imported once, here; this process never
touches CUDA) with its own time limit, cut to what is left of ``--budget``, and in its own process
group, so a hang or crash costs that part alone: it is recorded as FAILED with the end of its output
and the next part runs. Result lines (``name: value unit``, as the bench scripts print them) go to
``results.json`` and ``results.md`` in ``--out``, rewritten after every part; all output goes to
stdout. Exit status 1 if any part failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import re
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

import seglab  # noqa: F401  (imported once, here: every forked part shares it)

# Where the ``cuda``-marked tests are: named, since collecting all of tests/ needs packages the
# GPU machine lacks (wandb, hadolint).
CUDA_TEST_FILES = ("tests/test_cuda.py", "tests/inference/test_sliding_window.py")
RESULT_LINE = re.compile(r"^([a-z][^:]*): (.+)$")  # `name: value unit`; not Lightning's messages
PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "timm",
    "segmentation_models_pytorch",
    "jsonargparse",
)


@dataclass
class Part:
    name: str
    about: str  # what it measures, for the results table
    run: Callable[[list[str]], object]  # called in the forked process with argv
    argv: list[str]
    limit: float  # seconds


def environment(argv: list[str]) -> None:
    """What the numbers were measured on; fails when CUDA was asked for and is not there."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    device = parser.parse_args(argv).device
    print(f"python: {platform.python_version()}")
    for package in PACKAGES:
        print(f"{package}: {version(package)}")
    print(f"cpu_count: {os.cpu_count()}")
    if not torch.cuda.is_available():
        print("cuda_device: none")
        if device == "cuda":
            raise SystemExit("--device cuda, but torch sees no CUDA device")
        return
    props = torch.cuda.get_device_properties(0)
    memory = f"{props.total_memory / 2**30:.0f} GiB"
    capability = f"sm_{props.major}{props.minor}"
    print(f"cuda_device: {props.name}, {memory}, {capability}, CUDA {torch.version.cuda}")


class _Outcomes:
    """pytest plugin: each test's outcome, skips and expected failures included."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xpassed" if report.passed else "xfailed"
            self.outcomes[report.nodeid.split("::")[-1]] = outcome


def cuda_tests(argv: list[str]) -> None:
    """The ``cuda``-marked tests (all skipped without CUDA): one result line per test."""
    plugin = _Outcomes()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *argv], plugins=[plugin])
    for name, outcome in plugin.outcomes.items():
        print(f"{name}: {outcome}")
    counts = Counter(plugin.outcomes.values())
    print(f"cuda_tests: {', '.join(f'{n} {outcome}' for outcome, n in sorted(counts.items()))}")
    if code != 0:
        raise SystemExit(f"pytest exit status {int(code)}")


def bench(entry: str) -> Callable[[list[str]], object]:
    """``module:function`` of a bench script, imported when its part runs (in the forked
    process): a bench module that no longer imports fails its part, not the whole check."""
    module, function = entry.split(":")
    return lambda argv: getattr(import_module(module), function)(argv)


def plan(device: str, quick: bool) -> list[Part]:
    """The parts in the order they run: correctness first, the slowest (compile, one repeat: each
    loop compiles) last. Quick: toy sizes, and compile without code generation (inductor takes
    minutes on two CPU cores)."""
    if quick:
        step = "--encoder tu-test_resnet --size 64 --batch 2 --steps 3 --warmup 1 --repeats 1"
        step += " --compile_backend aot_eager"
        slide = "--size 64 128 --tile 32 --repeats 1"
        data = "--workers 1 --train_workers 1 --size 64 128 --crop 32 64 --batch 2 --steps 4"
        data += " --window 2 --unique 2 --train_encoder tu-test_resnet"
    else:
        step = "--encoder resnet34 --model_kwargs {} --size 512 --batch 16 --steps 30 --warmup 5"
        step += " --repeats 2 --threads 8"
        slide = "--size 1024 2048 --tile 512 --repeats 10 --encoder resnet34"
        data = ""  # data_loading.py's defaults
    on = f"--device {device} "
    step, bf16 = on + step, f"{on}{step} --precision bf16-mixed"
    cl = f"{bf16} --channels_last"
    rates = "bare PyTorch vs seglab images/s, ratio, MFU"
    segformer = f"{bf16} --arch segformer --encoder mit_b0"
    tiles = "one tile per forward vs batched tiles, Gaussian weighting"
    loading = "loader images/s, CPU vs on-device augmentation; data-wait fraction of training"
    step_overhead = bench("step_overhead:main")
    parts = [
        ("env", "versions and device", environment, on, 60),
        ("cuda_tests", "pytest -m cuda", cuda_tests, f"-m cuda {' '.join(CUDA_TEST_FILES)}", 180),
        ("step_unet_fp32", rates, step_overhead, step, 90),
        ("step_unet_bf16", rates, step_overhead, bf16, 90),
        ("step_unet_bf16_cl", rates, step_overhead, cl, 90),
        ("step_segformer_bf16", rates, step_overhead, segformer, 90),
        ("sliding_window", tiles,
         bench("sliding_window:main"), f"{on}--tile_batch_size 8 --weighting gaussian {slide}", 60),
        ("data_path", loading, bench("data_loading:main"), on + data, 150),
        ("step_unet_bf16_cl_compile", rates, step_overhead, f"{cl} --compile --repeats 1", 240),
    ]  # fmt: skip
    return [Part(name, about, run, argv.split(), limit) for name, about, run, argv, limit in parts]


def _child(part: Part, stdout: int, stderr: int) -> None:
    os.setpgid(0, 0)  # its own process group: a timeout ends its loader workers too
    os.dup2(stdout, 1)  # what C code and subprocesses write
    os.dup2(stderr, 2)
    # Python's streams too, even if they were replaced (pytest): open while the process lives
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    part.run(part.argv)


def run_part(part: Part, seconds: float) -> dict:
    """Runs ``part`` in a forked process for at most ``seconds``; echoes its output."""
    record = {"name": part.name, "about": part.about, "argv": part.argv, "results": {}}
    if seconds < 5:
        return {**record, "status": "FAILED", "seconds": 0.0, "error": "not run: budget spent"}
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = multiprocessing.get_context("fork").Process(
            target=_child, args=(part, out.fileno(), err.fileno())
        )
        process.start()
        process.join(seconds)
        timed_out = process.is_alive()
        with contextlib.suppress(ProcessLookupError):  # also what it left running
            os.killpg(process.pid, signal.SIGKILL)
        process.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    print(stdout + stderr, flush=True)
    record["seconds"] = round(time.monotonic() - start, 1)
    for line in stdout.splitlines():
        if match := RESULT_LINE.match(line):
            record["results"][match[1]] = match[2]
    if timed_out or process.exitcode != 0:
        why = f"timed out after {seconds:.0f} s" if timed_out else f"exit {process.exitcode}"
        tail = "\n".join((stdout + stderr).strip().splitlines()[-25:])
        return {**record, "status": "FAILED", "error": f"{why}\n{tail}"}
    return {**record, "status": "ok"}


def step_table(records: list[dict]) -> list[str]:
    """The step-overhead parts as one table (the table docs/benchmarks.md asks to fill)."""
    rows = [
        "| part | bare PyTorch images/s | seglab images/s | seglab/bare | model TFLOP/s | MFU |",
        "|---|---|---|---|---|---|",
    ]
    keys = ("bare_pytorch", "seglab", "ratio seglab/bare", "seglab_model_tflops", "seglab_mfu")
    for record in records:
        if record["name"].startswith("step_"):
            values = [record["results"].get(k, "-").split(" ")[0] for k in keys]
            rows.append(f"| {record['name']} | {' | '.join(values)} |")
    return rows


def write_results(out: Path, header: dict, records: list[dict]) -> str:
    """``results.json`` and ``results.md``; returns the markdown."""
    (out / "results.json").write_text(json.dumps({**header, "parts": records}, indent=1))
    failed = [r["name"] for r in records if r["status"] != "ok"]
    lines = [
        "# GPU check results",
        "",
        *(f"- {key}: {value}" for key, value in header.items()),
        f"- parts: {len(records) - len(failed)} ok, {len(failed)} FAILED {failed or ''}".rstrip(),
        "",
        "| part | status | seconds | measures |",
        "|---|---|---|---|",
        *(f"| {r['name']} | {r['status']} | {r['seconds']} | {r['about']} |" for r in records),
        "",
        *step_table(records),
    ]
    for r in records:
        lines += ["", f"## {r['name']}: {r['status']}", f"`{shlex.join(r['argv'])}`", "", "```"]
        lines += [f"{key}: {value}" for key, value in r["results"].items()]
        lines += [r["error"], "```"] if r["status"] != "ok" else ["```"]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="toy sizes: the dry run")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--budget", type=float, default=450, help="seconds for all parts")
    parser.add_argument("--only", nargs="+", help="run these parts only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in plan(args.device, args.quick) if not args.only or p.name in args.only]
    header = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["bench/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    deadline = time.monotonic() + args.budget
    records: list[dict] = []
    summary = ""
    for part in parts:
        assert not torch.cuda.is_initialized(), "CUDA initialised before fork"
        seconds = min(part.limit, deadline - time.monotonic())
        print(f"=== {part.name} (at most {seconds:.0f} s): {shlex.join(part.argv)}", flush=True)
        records.append(run_part(part, seconds))
        print(f"=== {part.name}: {records[-1]['status']} in {records[-1]['seconds']} s", flush=True)
        summary = write_results(args.out, header, records)
    print(summary)
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
