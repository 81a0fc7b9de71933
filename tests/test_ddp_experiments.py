"""Every shipped experiment trains under DDP: one optimizer step of its own model (random weights)
on a miniature copy of its dataset, two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.data.datasets.fixtures import (
    write_ade20k,
    write_camvid,
    write_cityscapes,
    write_pets,
    write_voc,
)
from tests.data.datasets.test_inria import write_inria

EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
SIZE = (40, 40)  # tiny images: the models are the experiments' own, the data is not
WRITERS = {
    "ade20k": lambda root: write_ade20k(root, size=SIZE),
    "camvid": lambda root: write_camvid(root, size=SIZE),
    "cityscapes": lambda root: write_cityscapes(root, size=SIZE),
    "pets": lambda root: write_pets(root, trainval=6, size=SIZE),
    "voc": lambda root: write_voc(root, sbd=2, size=SIZE),
    "inria": lambda root: write_inria(root, {"austin": [1, 6, 7, 8], "vienna": [9, 10]}, size=64),
}
TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_experiment_makes_one_ddp_step_on_two_processes(tmp_path):
    roots = {name: write(tmp_path / "data" / name) for name, write in WRITERS.items()}
    items = []
    for experiment in EXPERIMENTS:
        dataset = experiment.split("_")[0]
        items.append(f"{experiment}={roots.get(dataset, '')}")
    out = tmp_path / "results"
    out.mkdir()
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=port,
        WORLD_SIZE="2",
        NODE_RANK="0",
        OMP_NUM_THREADS="1",
    )
    logs = [tmp_path / f"rank{rank}.log" for rank in (0, 1)]
    processes = []
    for rank in (0, 1):
        with logs[rank].open("w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(REPO / "tests" / "ddp_experiments.py"), str(out), *items],
                    cwd=tmp_path,
                    env={**env, "LOCAL_RANK": str(rank)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for p in processes:
            p.wait(timeout=TIMEOUT)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    tails = "\n----\n".join(log.read_text()[-3000:] for log in logs)
    assert all(p.returncode == 0 for p in processes), tails
    for experiment in EXPERIMENTS:
        ranks = [json.loads((out / f"{experiment}-{rank}.json").read_text()) for rank in (0, 1)]
        for result in ranks:
            assert "error" not in result, f"{experiment}: {result.get('traceback')}"
            assert (result["world_size"], result["global_step"]) == (2, 1), experiment
            assert result["unused"] == [], (experiment, result["unused"])
        # DDP averaged the gradients: both ranks made the same step.
        assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6), experiment
