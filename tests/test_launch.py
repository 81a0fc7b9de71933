"""experiments/launch/: torchrun on two simulated nodes, and the SLURM batch script under a fake
srun."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seglab.callbacks.checkpointing import AtomicCheckpointIO
from seglab.cli import main
from tests.conftest import QUICKSTART, REPO, TINY

LAUNCH = REPO / "experiments" / "launch"
TORCHRUN = LAUNCH / "torchrun.sh"
SLURM = LAUNCH / "slurm.sbatch"
TIMEOUT = 240  # seconds; a hung rendezvous must fail the test, not the CI job

# TINY without its --config (the scripts take the config as their first argument), on the CPU.
TINY_ARGS = [*TINY[2:], "--trainer.accelerator", "cpu"]

# Written next to each test and put on PYTHONPATH: what every rank saw, as JSON, and (optionally)
# the pre-emption signal raised at a given step, as SLURM would send it.
PROBE = """
import json, os, signal
import lightning as L


class Probe(L.Callback):
    def __init__(self, out: str, signal_at_step: int = -1):
        self.out, self.signal_at_step = out, signal_at_step

    def _write(self, trainer, event):
        env = trainer.strategy.cluster_environment
        record = {
            "event": event,
            "environment": type(env).__name__,
            "auto_requeue": getattr(env, "auto_requeue", None),
            "requeue_signal": getattr(getattr(env, "requeue_signal", None), "name", None),
            "world_size": trainer.world_size,
            "global_rank": trainer.global_rank,
            "num_nodes": trainer.num_nodes,
            "checkpoint_io": type(trainer.strategy.checkpoint_io).__name__,
            "ckpt_path": trainer.ckpt_path,
            "global_step": trainer.global_step,
        }
        with open(f"{self.out}.rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\\n")

    def on_train_start(self, trainer, pl_module):
        self._write(trainer, "train_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        marker = f"{self.out}.signalled"  # once: a requeued job runs the same command
        if trainer.global_step == self.signal_at_step and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_fit_end(self, trainer, pl_module):
        self._write(trainer, "fit_end")
"""


def _probe(tmp_path: Path, name: str, signal_at_step: int = -1) -> list[str]:
    (tmp_path / "launch_probe.py").write_text(PROBE)
    init = {"out": str(tmp_path / name), "signal_at_step": signal_at_step}
    return [
        "--trainer.callbacks+",
        json.dumps({"class_path": "launch_probe.Probe", "init_args": init}),
    ]


def _records(tmp_path: Path, name: str, rank: int) -> dict[str, dict]:
    lines = (tmp_path / f"{name}.rank{rank}.jsonl").read_text().splitlines()
    return {r["event"]: r for r in map(json.loads, lines)}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return {**env, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """In its own process group (to kill torchrun's workers too); output to a file, not a pipe
    that could fill up and block one rank while the other waits for it."""
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait(processes: list[subprocess.Popen], logs: list[Path]) -> list[str]:
    """Every process's output; all are killed if one of them runs past the timeout."""
    try:
        for p in processes:
            p.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        tails = "\n----\n".join(log.read_text()[-3000:] for log in logs)
        pytest.fail(f"launch timed out after {TIMEOUT} s:\n{tails}")
    return [log.read_text() for log in logs]


def test_the_launch_scripts_are_valid_bash():
    for script in (TORCHRUN, SLURM):
        subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.slow
def test_torchrun_script_trains_on_two_simulated_nodes(tmp_path):
    port = str(_free_port())
    csv_logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": "logs"},
    }
    args = [*TINY_ARGS, "--trainer.max_epochs", "1", "--trainer.logger", json.dumps(csv_logger)]
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    nodes = [
        _start(
            ["bash", str(TORCHRUN), str(QUICKSTART), *args, *_probe(tmp_path, "probe")],
            tmp_path,
            _env(
                tmp_path,
                NNODES="2",
                NODE_RANK=str(rank),
                GPUS_PER_NODE="1",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
                PYTHON=sys.executable,
            ),
            logs[rank],
        )
        for rank in (0, 1)
    ]
    outputs = _wait(nodes, logs)
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-3000:]

    # Each launch ran one rank of a two-process world under torchrun's environment.
    for rank in (0, 1):
        seen = _records(tmp_path, "probe", rank)["fit_end"]
        assert seen["environment"] == "TorchElasticEnvironment"
        assert (seen["world_size"], seen["global_rank"], seen["num_nodes"]) == (2, rank, 2)
        assert seen["checkpoint_io"] == "AtomicCheckpointIO"

    # Rank 0 alone wrote the checkpoints and the metrics; 4 training images over 2 ranks at batch
    # size 2 make one step per epoch (a single process would take two).
    checkpoints = sorted(p.name for p in tmp_path.rglob("*.ckpt"))
    assert checkpoints == ["best-epoch=00.ckpt", "last.ckpt"]
    last = next(tmp_path.rglob("last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 1
    (metrics,) = tmp_path.rglob("metrics.csv")
    header, *rows = metrics.read_text().splitlines()
    assert "val/mIoU" in header.split(",") and rows


def _fake_slurm(tmp_path: Path) -> Path:
    """``srun`` that runs its command as task 0 of a one-node job; ``scontrol`` that records its
    call."""
    bin_dir = tmp_path / "fake_slurm_bin"
    bin_dir.mkdir(exist_ok=True)
    scripts = {
        "srun": (
            "#!/usr/bin/env bash\n"
            "while [[ $1 == -* ]]; do shift; done\n"
            "export SLURM_NTASKS=1 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 "
            "SLURM_NODELIST=127.0.0.1\n"
            'exec "$@"\n'
        ),
        "scontrol": f'#!/usr/bin/env bash\necho "$@" >> {tmp_path / "scontrol.log"}\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _sbatch(tmp_path: Path, args: list[str]) -> str:
    env = _env(
        tmp_path,
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="seglab",
        SLURM_NNODES="1",
        SLURM_NTASKS_PER_NODE="1",
        MASTER_PORT=str(_free_port()),
    )
    env["PATH"] = os.pathsep.join([str(_fake_slurm(tmp_path)), env["PATH"]])
    log = tmp_path / "slurm-4242.out"
    job = _start(["bash", str(SLURM), str(QUICKSTART), *TINY_ARGS, *args], tmp_path, env, log)
    (output,) = _wait([job], [log])
    assert job.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_slurm_script_requeues_on_sigusr1_and_the_requeued_job_resumes(tmp_path):
    # First attempt: SIGUSR1 after step 1 (SLURM's pre-emption warning) while an epoch is running.
    args = ["--trainer.max_epochs", "2", *_probe(tmp_path, "job", signal_at_step=1)]
    output = _sbatch(tmp_path, args)
    first = _records(tmp_path, "job", 0)["train_start"]
    assert first["environment"] == "SLURMEnvironment"
    assert (first["auto_requeue"], first["requeue_signal"]) == (True, "SIGUSR1")
    assert first["checkpoint_io"] == "AtomicCheckpointIO"  # the SLURM plugin did not replace it
    assert first["ckpt_path"] is None  # --ckpt_path last with nothing to resume: a new run
    last = tmp_path / "outputs" / "slurm" / "seglab-4242" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 1
    assert not list(last.parents[1].glob("hpc_ckpt_*.ckpt"))
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert "Traceback" not in output
    assert "SLURM job 4242 requeued" in output.strip().splitlines()[-1]

    # The requeued job: the same script, the same arguments (its --ckpt_path last finds the save).
    _sbatch(tmp_path, args)
    requeued = _records(tmp_path, "job", 0)
    assert (tmp_path / requeued["train_start"]["ckpt_path"]).resolve() == last.resolve()
    assert requeued["train_start"]["global_step"] == 1
    assert requeued["fit_end"]["global_step"] == 4  # 2 epochs x 2 steps: nothing lost or repeated


def test_a_plugins_list_on_the_command_line_keeps_the_atomic_checkpoint_writer():
    slurm = '{"class_path": "lightning.pytorch.plugins.environments.SLURMEnvironment"}'
    cli = main(["fit", *TINY, "--trainer.fast_dev_run", "1", "--trainer.plugins", slurm])
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert isinstance(cli.trainer._accelerator_connector.cluster_environment, SLURMEnvironment)

    own = "lightning.pytorch.plugins.io.TorchCheckpointIO"
    cli = main(["fit", *TINY, "--trainer.fast_dev_run", "1", "--trainer.plugins", own])
    assert type(cli.trainer.strategy.checkpoint_io) is TorchCheckpointIO  # the user's choice wins
