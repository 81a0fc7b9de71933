"""Train, get killed, resume by name: the journey of the quickstart on a pre-empted node.

The shortened quickstart runs in a subprocess from a fresh working directory; it is killed once a
checkpoint exists and resumed with the very same command plus ``--ckpt_path last`` (SIGKILL), or
with the command the SIGTERM message prints, verbatim.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import QUICKSTART

EPOCHS, STEPS_PER_EPOCH = 6, 3  # 48 training images in batches of 16
# fmt: off
SHORT_QUICKSTART = [
    "fit", "--config", str(QUICKSTART),
    "--trainer.max_epochs", str(EPOCHS), "--trainer.enable_progress_bar", "false",
    "--model.encoder_name", "tu-test_resnet", "--model.model_kwargs", "{}",
    "--data.init_args.image_size", "64", "--data.init_args.crop_size", "64",
    "--data.init_args.num_train", "48", "--data.init_args.num_val", "8",
    "--data.init_args.num_workers", "0",
]
# fmt: on
RUN_DIR = Path("outputs/quickstart")
LAST = RUN_DIR / "checkpoints/last.ckpt"


def start(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def seglab(*args: str) -> list[str]:
    return [sys.executable, "-m", "seglab", *args]


def stop_after_first_checkpoint(proc: subprocess.Popen, sig: signal.Signals) -> str:
    while not LAST.exists():
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.02)
    proc.send_signal(sig)
    output = proc.communicate(timeout=300)[0]
    assert torch.load(LAST, weights_only=True)["global_step"] < EPOCHS * STEPS_PER_EPOCH, output
    return output


def logged_rows(metric: str) -> list[tuple[int, int]]:
    """``(epoch, step)`` of the rows with ``metric`` of the run's one ``metrics.csv``."""
    (version,) = (RUN_DIR / "lightning_logs").iterdir()  # the resumed run continues the same one
    with open(version / "metrics.csv") as f:
        return [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(f) if r[metric]]


@pytest.mark.slow
def test_sigkill_then_the_same_command_with_ckpt_path_last_resumes_in_the_same_run_dir():
    first = start(seglab(*SHORT_QUICKSTART))
    output = stop_after_first_checkpoint(first, signal.SIGKILL)
    assert f"run directory {RUN_DIR}" in output
    saved = torch.load(LAST, weights_only=True)
    saved_step, saved_epoch = saved["global_step"], saved["epoch"]
    assert saved_step > 0

    resumed = start(seglab(*SHORT_QUICKSTART, "--ckpt_path", "last"))
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert f"--ckpt_path last: {LAST}" in output and f"run directory {RUN_DIR}" in output
    assert f"Restoring states from the checkpoint path at {LAST}" in output
    assert torch.load(LAST, weights_only=True)["global_step"] == EPOCHS * STEPS_PER_EPOCH
    # one history: no epoch trained twice from scratch, no step logged twice or out of order
    for metric in ("train/loss", "val/mIoU"):
        rows = logged_rows(metric)
        assert [step for _, step in rows] == sorted({step for _, step in rows}), metric
        assert [epoch for epoch, _ in rows] == sorted(epoch for epoch, _ in rows), metric
    validated = [epoch for epoch, _ in logged_rows("val/mIoU")]
    assert validated == sorted(set(validated)) and validated[-1] == EPOCHS - 1 > saved_epoch
    assert "Best validation metrics" in output


@pytest.mark.slow
def test_sigterm_saves_and_prints_a_resume_command_that_works_verbatim():
    first = start(seglab(*SHORT_QUICKSTART))
    output = stop_after_first_checkpoint(first, signal.SIGTERM)
    assert first.returncode == 0, output
    line = next(line for line in output.splitlines() if "SIGTERM: saved" in line)
    command = line.split("resume with: ", 1)[1]
    assert command == shlex.join(["seglab", *SHORT_QUICKSTART, "--ckpt_path", "last"])
    saved_step = torch.load(LAST, weights_only=True)["global_step"]

    argv = shlex.split(command)
    assert shutil.which(argv[0]), "the seglab command is installed with the package"
    resumed = start(argv)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert f"Restoring states from the checkpoint path at {LAST}" in output
    assert torch.load(LAST, weights_only=True)["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert saved_step < EPOCHS * STEPS_PER_EPOCH
