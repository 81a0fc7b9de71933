"""One run across resumes: a resumed fit continues its W&B run, its CSV file and its TensorBoard
version; a new fit is a new run; a resumed run with other settings says which."""

from __future__ import annotations

import csv
import json
import shlex
import signal
import time
from pathlib import Path

import pytest
import torch
import wandb
from lightning.pytorch.loggers import WandbLogger

from seglab.cli import main
from seglab.cli.loggers import skip_logged_steps, wandb_offline_runs
from seglab.compat import wandb_logged_metrics
from tests.cli.test_preemption import RUN, RUN_DIR, WITH_LOGGERS, probe, run_in_group
from tests.conftest import TINY


def identity(root: Path = Path()) -> dict:
    return json.loads((root / RUN_DIR / "run.json").read_text())


def wandb_steps(root: Path, metric: str = "train/loss") -> tuple[set[str], list[int]]:
    """The run ids of the offline W&B folders, and the steps of ``metric`` over all of them in
    the order they were written (the order ``wandb sync`` uploads them)."""
    folders = sorted(
        (root / RUN_DIR / "wandb").glob("offline-run-*"), key=lambda p: p.stat().st_mtime_ns
    )
    deadline = time.monotonic() + 30  # wandb's service process may still be writing
    while not all(list(f.glob("run-*.wandb")) for f in folders) and time.monotonic() < deadline:
        time.sleep(0.2)
    ids = {next(folder.glob("run-*.wandb")).stem.removeprefix("run-") for folder in folders}
    steps = [
        step
        for folder in folders
        for key, step in wandb_logged_metrics(next(folder.glob("run-*.wandb")))
        if key == metric
    ]
    return ids, steps


def csv_steps(root: Path, metric: str = "train/loss") -> tuple[list[Path], list[int]]:
    files = sorted((root / RUN_DIR / "lightning_logs").glob("version_*/metrics.csv"))
    steps = []
    for path in files:
        with path.open(newline="") as f:
            steps += [int(row["step"]) for row in csv.DictReader(f) if row.get(metric)]
    return files, steps


@pytest.mark.slow
def test_a_new_fit_is_a_new_run_and_a_resumed_fit_continues_it(capsys):
    short = [*TINY, *WITH_LOGGERS, "--trainer.max_steps", "2"]
    main(["fit", *short])
    first = identity()
    main(["fit", *short])
    second = identity()
    assert first["wandb"][0]["id"] != second["wandb"][0]["id"]
    assert (first["csv"][0]["version"], second["csv"][0]["version"]) == (0, 1)

    capsys.readouterr()
    cli = main(["fit", *short[:-1], "4", "--ckpt_path", "last"])
    err = capsys.readouterr().err
    wandb_logger = cli.trainer.loggers[1]
    assert wandb_logger.version == second["wandb"][0]["id"]
    assert cli.trainer.loggers[0].version == 1
    assert identity() == second  # the run's identity is its first fit's
    assert f"W&B run {second['wandb'][0]['id']}" in err and "csv version 1" in err
    upload = f"wandb sync {RUN_DIR}/wandb/offline-run-*-{second['wandb'][0]['id']}*"
    assert upload in err
    # the settings that differ from the first part's are named: here the longer schedule
    # (only that: what the checkpoint fills in, classes and normalisation, is no change)
    changed = next(line for line in err.splitlines() if "settings differ" in line)
    assert changed.split("): ", 1)[1].split("; the loggers")[0] == "trainer.max_steps 2 -> 4"
    files, steps = csv_steps(Path())
    # version 0: the first run; version 1: the second, then its continuation appended
    assert len(files) == 2 and steps[:4] == [0, 1, 0, 1], steps
    resumed = steps[4:]
    assert len(resumed) == 2 and resumed == sorted(set(resumed)) and resumed[0] > 1, steps


def _resume_command(output: str) -> list[str]:
    final = output.strip().splitlines()[-1]
    return shlex.split(final.split("resume with: ", 1)[1])[1:]  # without "seglab"


def _one_run(root: Path, total: int, resumed_from: int = 0) -> None:
    ids, steps = wandb_steps(root)
    assert ids == {identity(root)["wandb"][0]["id"]}  # one W&B run
    # every step once, in order (after a SIGKILL, W&B's service may not have written what the
    # killed part sent it: then the resumed part's steps are there, each once)
    assert steps == list(range(total))[-len(steps) :], ("W&B", steps)
    assert len(steps) >= total - resumed_from, ("W&B", steps)
    files, rows = csv_steps(root)
    assert [f.parent.name for f in files] == ["version_0"]
    assert rows == list(range(total)), ("CSV", rows)


@pytest.mark.slow
def test_sigterm_then_the_printed_command_continues_one_wandb_run_and_one_csv(tmp_path):
    argv = ["fit", *RUN, *WITH_LOGGERS, *probe(step=3)]
    status, output = run_in_group(tmp_path, argv)
    assert status == 0, output[-3000:]
    status, output = run_in_group(tmp_path, _resume_command(output))
    assert status == 0, output[-3000:]
    assert "Traceback" not in output
    _one_run(tmp_path, total=16)  # 2 epochs of 8 steps


@pytest.mark.slow
def test_sigkill_then_ckpt_path_last_continues_one_wandb_run_and_one_csv(tmp_path):
    argv = ["fit", *RUN, *WITH_LOGGERS]
    # the training process is killed (W&B's service process lives on and writes what it got)
    status, _ = run_in_group(tmp_path, [*argv, *probe(step=11, name="SIGKILL", group=False)])
    assert status == -signal.SIGKILL
    last = tmp_path / RUN_DIR / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
    status, output = run_in_group(tmp_path, [*argv, "--ckpt_path", "last"])
    assert status == 0, output[-3000:]
    _one_run(tmp_path, total=16, resumed_from=8)


def test_a_resumed_offline_wandb_run_logs_no_metric_at_a_step_it_has(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    first = wandb.init(project="p", id="once0001", dir=tmp_path, mode="offline")
    for step in range(11):  # a killed part: logged 3 steps past its checkpoint at step 8
        first.log({"trainer/global_step": step, "train/loss": 1.0})
        first.log({"trainer/global_step": step + 1, "perf/images_per_sec": 1.0})
    first.finish()
    logger = WandbLogger(project="p", id="once0001", save_dir=str(tmp_path), offline=True)
    skip_logged_steps(logger, offline=True)
    for step in range(8, 16):  # the resumed part trains steps 8.. again
        logger.log_metrics({"train/loss": 0.5}, step=step)
        logger.log_metrics({"perf/images_per_sec": 2.0}, step=step + 1)
    logger.experiment.finish()
    files = [f / "run-once0001.wandb" for f in wandb_offline_runs(logger)]
    assert len(files) == 2
    for metric, expected in (("train/loss", range(16)), ("perf/images_per_sec", range(1, 17))):
        steps = [s for path in files for key, s in wandb_logged_metrics(path) if key == metric]
        assert steps == list(expected), (metric, steps)


@pytest.mark.slow
def test_a_resumed_fit_writes_to_the_same_tensorboard_version():
    board = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {}}
    board["init_args"]["save_dir"] = str(RUN_DIR / "tb")
    short = [*TINY, "--trainer.logger", json.dumps([board]), "--trainer.max_steps", "2"]
    main(["fit", *short])
    main(["fit", *short])  # a new run: version_1
    cli = main(["fit", *short[:-1], "4", "--ckpt_path", "last"])
    assert cli.trainer.logger.version == 1 == identity()["tensorboard"][0]["version"]
    versions = sorted(p.name for p in (RUN_DIR / "tb" / "lightning_logs").iterdir())
    assert versions == ["version_0", "version_1"]
    assert len(list((RUN_DIR / "tb" / "lightning_logs" / "version_1").glob("events.*"))) == 2
