"""Every evaluation sample counted once under DDP, with anyone's data module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from seglab.models.evaluation import real_samples

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("size", [1, 5, 7, 8, 9, 11])
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_the_kept_samples_of_all_ranks_are_the_split_once(size, world, batch):
    dataset = TensorDataset(torch.arange(size))
    kept = []
    for rank in range(world):
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler)
        for i, (values,) in enumerate(loader):
            kept += values[: real_samples(loader, i, len(values))].tolist()
    assert sorted(kept) == list(range(size))


def test_a_loader_without_a_distributed_sampler_keeps_everything():
    loader = DataLoader(TensorDataset(torch.arange(5)), batch_size=2)
    assert [real_samples(loader, i, 2) for i in range(2)] == [2, 2]


def run(devices: int, num_val: int, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = [sys.executable, str(REPO / "tests/foreign_ddp.py"), str(devices), str(num_val)]
    done = subprocess.run(
        [*script, str(out)], env=env, cwd=out.parent, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("num_val", [5, 7])
def test_two_processes_give_the_one_process_metrics_with_a_foreign_data_module(tmp_path, num_val):
    """Lightning's sampler pads 5 or 7 samples to 6 or 8 over 2 processes; seglab's metrics leave
    the repeated sample out, so val/* and test/* equal the single-process numbers."""
    single = run(1, num_val, tmp_path / "one.json")
    ddp = run(2, num_val, tmp_path / "two.json")
    assert "val/mIoU" in single and "test/mIoU" in single
    assert single.keys() == ddp.keys()
    for name, value in single.items():
        assert ddp[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_a_bad_label_one_process_sees_stops_every_process(tmp_path):
    """The counts of the process that saw it reach the check (DDP broadcasts buffers from the first
    process before each step: counts kept there would be lost), and all processes stop."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/labels_ddp.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "125 pixels of the train masks are neither class ids 0..2" in done.stderr
