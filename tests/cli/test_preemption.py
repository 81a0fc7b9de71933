"""Pre-emption of the whole job: a signal to every process of the run (the data workers included,
as ``scancel``, pre-emption and ``timeout`` send it) stops it cleanly.

The run starts as its own process group (``start_new_session``); a probe callback signals that
group at a chosen step, so the step reached is known."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY

PROBE = """
import os, signal, time
import lightning as L


class SignalGroup(L.Callback):
    '''Signals the whole process group (every rank, every data worker) at a step or batch.'''

    def __init__(self, step: int = 3, name: str = "SIGTERM", stage: str = "train", group=True):
        self.step, self.name, self.stage, self.group = step, name, stage, group

    def _send(self, trainer, index):
        if index == self.step and trainer.is_global_zero:
            if self.group:
                os.killpg(os.getpgid(0), getattr(signal, self.name))
            else:  # the training process alone (the OOM killer, a crash)
                os.kill(os.getpid(), getattr(signal, self.name))
            time.sleep(0.3)  # the signal is there before the batch ends

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.stage == "train":
            self._send(trainer, trainer.global_step)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        if self.stage == "predict":
            self._send(trainer, batch_idx)
"""

# The tiny run with 2 data workers and enough batches to be stopped in the middle of an epoch.
RUN = [
    *TINY,
    "--data.init_args.num_workers", "2",
    "--data.init_args.num_train", "16",
    "--trainer.max_epochs", "2",
]  # fmt: skip


RUN_DIR = Path("outputs/quickstart")
LOGGERS = [
    {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(RUN_DIR)}},
    {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"project": "seglab"}},
]
WITH_LOGGERS = ["--trainer.logger", json.dumps(LOGGERS), "--trainer.log_every_n_steps", "1"]


def run_in_group(tmp_path: Path, argv: list[str], timeout: int = 300) -> tuple[int, str]:
    """``seglab ARGV`` as its own process group; its exit status and output."""
    (tmp_path / "signal_probe.py").write_text(PROBE)
    # (WANDB_SERVICE: an earlier in-process test's wandb service, whose working directory is
    # another test's; the run must start its own)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "MASTER_")) and k != "WANDB_SERVICE"
    }
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    log = tmp_path / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "seglab", *argv],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"timed out:\n{log.read_text()[-3000:]}")
    wait_for_group(process.pid)  # DDP: the other rank writes to the same log
    return process.returncode, log.read_text()


def wait_for_group(group: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def probe(**init: object) -> list[str]:
    spec = {"class_path": "signal_probe.SignalGroup", "init_args": init}
    return ["--trainer.callbacks+", json.dumps(spec)]


def check_stopped_fit(tmp_path: Path, status: int, output: str, step: int) -> None:
    assert status == 0, output[-3000:]
    assert "Traceback" not in output and "killed by signal" not in output, output[-3000:]
    last = tmp_path / RUN_DIR / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == step
    final = output.strip().splitlines()[-1]
    assert final.startswith("SIGTERM: saved") and f"last.ckpt at step {step}" in final, final
    assert final.endswith("--ckpt_path last"), final
    # the printed command is the one given, with --ckpt_path last
    assert final.split("resume with: ", 1)[1].startswith("seglab fit --config"), final


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_saves_and_prints_the_resume_command(tmp_path):
    argv = ["fit", *RUN, *probe(step=3)]
    status, output = run_in_group(tmp_path, argv)
    check_stopped_fit(tmp_path, status, output, 3)


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_under_ddp_and_one_wandb_run(tmp_path):
    argv = ["fit", *RUN, "--trainer.devices", "2", "--trainer.strategy", "ddp", *probe(step=2)]
    status, output = run_in_group(tmp_path, [*argv, *WITH_LOGGERS])
    check_stopped_fit(tmp_path, status, output, 2)
    assert output.count("SIGTERM: saved") == 1  # rank 0 says it
    # only rank 0 owns the loggers' identity: one W&B run, the one recorded
    folders = list((tmp_path / RUN_DIR / "wandb").glob("offline-run-*"))
    run_id = json.loads((tmp_path / RUN_DIR / "run.json").read_text())["wandb"][0]["id"]
    assert len(folders) == 1 and folders[0].name.endswith(run_id), folders
    assert (tmp_path / RUN_DIR / "lightning_logs" / "version_0" / "metrics.csv").is_file()


@pytest.mark.slow
def test_predict_stops_cleanly_and_says_the_predictions_are_incomplete(tmp_path):
    trained = ["fit", *TINY, "--trainer.max_steps", "1"]
    status, output = run_in_group(tmp_path, trained)
    assert status == 0, output[-3000:]
    argv = ["predict", *RUN, "--ckpt_path", "last", "--output_dir", "predictions"]
    argv += ["--data.init_args.num_test", "12", *probe(step=1, stage="predict")]
    status, output = run_in_group(tmp_path, argv)
    assert status == 1, output[-3000:]
    assert "Traceback" not in output and "killed by signal" not in output, output[-3000:]
    final = output.strip().splitlines()[-1]
    assert final.startswith("seglab predict: stopped by SIGTERM before the end"), final
    written = list((tmp_path / "predictions").rglob("*.png"))
    assert 0 < len(written) < 12
