"""Validation and test metrics on N processes equal the single-process numbers: no sample counted
twice (Lightning's default sampler pads the split with repeats), none dropped."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from seglab.cli import main
from seglab.data.io import DataError
from tests.conftest import TINY


def _datamodule_on_rank(num_samples: int, rank: int, world_size: int):
    from seglab import SyntheticDataModule

    dm = SyntheticDataModule(image_size=16, num_val=num_samples, num_workers=0, eval_batch_size=2)
    dm.trainer = SimpleNamespace(
        distributed_sampler_kwargs={"num_replicas": world_size, "rank": rank}
    )
    return dm


@pytest.mark.parametrize(
    ("num_samples", "world_size"),
    [(n, w) for n in (2, 3, 7, 8, 9) for w in (2, 3) if n >= w],
)
def test_each_sample_is_evaluated_by_exactly_one_rank(num_samples, world_size):
    seen = []
    for rank in range(world_size):
        loader = _datamodule_on_rank(num_samples, rank, world_size).val_dataloader()
        seen += list(loader.sampler)
    assert sorted(seen) == list(range(num_samples))


def test_a_split_smaller_than_the_number_of_processes_is_refused_by_name():
    with pytest.raises(DataError, match=r"val split has 2 samples, fewer than the 3 processes"):
        _datamodule_on_rank(2, rank=0, world_size=3).val_dataloader()


def _metrics(log_dir: Path, prefix: str) -> dict[str, float]:
    (path,) = log_dir.rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith(prefix) and v}


def _seglab(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "seglab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_metrics_on_two_ddp_processes_equal_one_process(tmp_path, subcommand):
    # 7 validation and 5 test images in batches of 2: both ranks end on a partial batch and the
    # padded default sampler would count one image twice.
    data = [
        *TINY,
        "--data.init_args.num_val", "7",
        "--data.init_args.num_test", "5",
        "--data.init_args.eval_batch_size", "2",
    ]  # fmt: skip
    main(["fit", *data, "--trainer.max_epochs", "2", "--trainer.default_root_dir", "run"])
    ckpt = next(Path("run/checkpoints").glob("best-*.ckpt"))

    results = {}
    for devices in (1, 2):
        logger = f'{{"class_path": "CSVLogger", "init_args": {{"save_dir": "logs{devices}"}}}}'
        _seglab(
            [
                subcommand, *data,
                "--trainer.logger", logger,
                "--trainer.accelerator", "cpu",
                "--trainer.strategy", "ddp" if devices > 1 else "auto",
                "--trainer.devices", str(devices),
                "--ckpt_path", str(ckpt.resolve()),
            ],
            cwd=tmp_path,
        )  # fmt: skip
        prefix = "val/" if subcommand == "validate" else "test/"
        results[devices] = _metrics(tmp_path / f"logs{devices}", prefix)

    single, ddp = results[1], results[2]
    assert f"{'val' if subcommand == 'validate' else 'test'}/mIoU" in single
    assert single.keys() == ddp.keys()
    for name, value in single.items():
        assert ddp[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_validation_inside_ddp_fit_matches_a_single_process_validate(tmp_path):
    # 5 images in batches of 2 over 2 ranks: rank 0 runs two batches, rank 1 one. Validation inside
    # fit goes through the DDP wrapper; it must neither hang nor miscount.
    data = [*TINY, "--data.init_args.num_val", "5", "--data.init_args.eval_batch_size", "2"]
    run = ["--trainer.accelerator", "cpu", "--trainer.max_epochs", "1"]
    _seglab(
        [
            "fit", *data, *run,
            "--trainer.logger", '{"class_path": "CSVLogger", "init_args": {"save_dir": "fit"}}',
            "--trainer.strategy", "ddp",
            "--trainer.devices", "2",
            "--trainer.default_root_dir", "run",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    (ckpt,) = (tmp_path / "run").rglob("last.ckpt")
    _seglab(
        [
            "validate", *data, *run,
            "--trainer.logger", '{"class_path": "CSVLogger", "init_args": {"save_dir": "val"}}',
            "--ckpt_path", str(ckpt),
        ],
        cwd=tmp_path,
    )  # fmt: skip
    in_fit, alone = _metrics(tmp_path / "fit", "val/"), _metrics(tmp_path / "val", "val/")
    assert "val/mIoU" in alone
    for name, value in alone.items():
        assert in_fit[name] == pytest.approx(value, abs=1e-6), name
