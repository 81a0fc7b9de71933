"""Streamed datasets: ``seglab optimize`` writes a data module's splits as LitData shards,
``StreamingDataModule`` streams them back, on one process or several, from a local directory or an
object store, and resumes an interrupted epoch where it stopped."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab import FolderDataModule, StreamingDataModule
from seglab.cli import main
from seglab.data.streaming import _arrays, split_dir, streaming_dataset
from seglab.errors import ConfigError
from tests.conftest import TINY_RUN, user_error, write_folder_dataset
from tests.data.streaming_helpers import recorded

pytest.importorskip("litdata")
REPO = Path(__file__).resolve().parents[2]
FOLDER = ["--data", "seglab.FolderDataModule", "--data.num_classes", "3"]


def folder_dataset(root: Path, train: int, val: int) -> Path:
    """The folder layout with one sample whose name is much longer than the others'."""
    write_folder_dataset(root, {"train": train, "val": val}, size=(40, 48))
    for kind in ("images", "masks"):
        shutil.copy(
            root / "train" / kind / "img000.png", root / "train" / kind / "a_longer_name_9.png"
        )
    return root


def optimize(root: Path, output_dir: str, *extra: str) -> None:
    main(["optimize", *FOLDER, "--data.root", str(root), "--output_dir", output_dir, *extra])


def expected_samples(root: Path, split: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    dataset = FolderDataModule(root=str(root), num_classes=3).make_dataset(split)
    return {name: (image, mask) for image, mask, name in map(dataset.read, range(len(dataset)))}


def assert_same_samples(got: list[tuple[torch.Tensor, torch.Tensor, str]], expected: dict) -> None:
    names = [name for _, _, name in got]
    assert sorted(names) == sorted(expected), "every sample exactly once"
    for image, mask, name in got:
        want_image, want_mask = expected[name]
        assert image.dtype == want_image.dtype and torch.equal(image, want_image), name
        assert mask.shape == want_mask.shape and torch.equal(mask.long(), want_mask.long()), name


def test_optimized_splits_stream_back_bit_identical_and_paired(tmp_path, capsys):
    root = folder_dataset(tmp_path / "ds", train=7, val=3)
    optimize(root, "shards", "--num_workers", "2", "--chunk_bytes", "20KB")
    out = capsys.readouterr().out
    assert "train: 8 samples in" in out and "val: 3 samples in" in out and "MiB" in out
    assert len(list(Path("shards/train").glob("chunk-*.bin"))) > 1  # several shards, two writers

    data = StreamingDataModule(input_dir="shards", num_workers=0)
    assert (data.num_classes, data.class_names) == (3, ["0", "1", "2"])
    assert data.mean == (0.485, 0.456, 0.406) and data.ignore_index == 255
    for split in ("train", "val"):
        expected = expected_samples(root, split)
        source = data.source(split)  # by index: what evaluation reads
        assert_same_samples([source.read(i) for i in range(len(source))], expected)
        # in LitData's shuffled streaming order: what training reads before its transform
        streamed = streaming_dataset(split_dir("shards", split), shuffle=True)
        assert_same_samples([_arrays(item) for item in streamed], expected)

    # Training batches: seglab's crop, normalised in the workers or (augment_on_device) left uint8
    # for the device.
    for on_device, dtype in ((False, torch.float32), (True, torch.uint8)):
        data = StreamingDataModule(
            input_dir="shards", batch_size=2, crop_size=32, augment_on_device=on_device
        )
        batch = next(iter(data.train_dataloader()))
        assert batch["image"].dtype == dtype and batch["image"].shape == (2, 3, 32, 32)
        assert batch["mask"].shape == (2, 32, 32) and batch["mask"].dtype == torch.int64


def test_a_bad_sample_stops_optimize_naming_its_file(tmp_path, capsys):
    root = folder_dataset(tmp_path / "ds", train=4, val=2)
    bad = root / "train" / "masks" / "img002.png"
    mask = np.array(Image.open(bad))
    mask[5, 5] = 7
    Image.fromarray(mask).save(bad)
    args = ["optimize", *FOLDER, "--data.root", str(root), "--output_dir", "shards"]
    user_error(args, capsys, 1, str(bad), "[7]")


def test_streaming_refuses_what_it_cannot_do(tmp_path, capsys):
    optimize(folder_dataset(tmp_path / "ds", train=4, val=2), "shards", "--num_workers", "1")
    with pytest.raises(ConfigError, match=r"rare_class_sampling.*no weighted sampling"):
        StreamingDataModule(input_dir="shards", rare_class_sampling={"temperature": 0.1})
    with pytest.raises(ConfigError, match=r"ignore_index.*set model.ignore_index 255"):
        StreamingDataModule(input_dir="shards", ignore_index=0)
    with pytest.raises(ConfigError, match=r"data.input_dir: .*nowhere is not a directory"):
        StreamingDataModule(input_dir="nowhere")
    again = ["optimize", *FOLDER, "--data.root", str(tmp_path / "ds"), "--output_dir", "shards"]
    user_error(again, capsys, 2, "shards/train is not empty", "--overwrite true")


# --- training in subprocesses --------------------------------------------------------------------
def seglab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "seglab", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def run_seglab(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        seglab_command(*args), cwd=cwd, env=environment(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def streamed_run(
    *extra: str, record: str = "names", delay: float = 0.0, every_step: bool = False
) -> list[str]:
    """The tiny model on the shards in ``shards``, recording the samples trained on."""
    callbacks = [
        '{"class_path": "tests.data.streaming_helpers.RecordSamples", '
        f'"init_args": {{"path": "{record}", "delay": {delay}}}}}'
    ]
    if every_step:
        callbacks.append(
            '{"class_path": "ModelCheckpoint", '
            '"init_args": {"every_n_train_steps": 1, "save_last": true}}'
        )
    return [
        *TINY_RUN,
        "--data", "seglab.StreamingDataModule", "--data.input_dir", "shards",
        "--data.batch_size", "2", "--data.eval_batch_size", "2", "--data.crop_size", "32",
        "--trainer.accelerator", "cpu", "--trainer.callbacks", f"[{', '.join(callbacks)}]",
        *extra,
    ]  # fmt: skip


def metrics(log_dir: Path) -> dict[str, float]:
    (path,) = log_dir.rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("val/") and v}


@pytest.mark.slow
def test_two_ddp_processes_train_on_disjoint_samples_and_validate_exactly(tmp_path):
    # 12 training samples in batches of 2 on 2 processes: 3 batches each, every sample once.
    # 5 validation samples in batches of 2: one process evaluates 3, the other 2.
    write_folder_dataset(tmp_path / "ds", {"train": 12, "val": 5})
    optimize(tmp_path / "ds", "shards", "--num_workers", "2", "--chunk_bytes", "20KB")
    logger = '{"class_path": "CSVLogger", "init_args": {"save_dir": "fit"}}'
    run_seglab(
        "fit", *streamed_run(
            "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_epochs", "1",
            "--trainer.logger", logger, "--trainer.default_root_dir", "run",
            "--data.num_workers", "1",
        ),
        cwd=tmp_path,
    )  # fmt: skip
    ranks = [{name for _, _, name in recorded(tmp_path / "names", rank)} for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 6
    assert not ranks[0] & ranks[1], "the two processes trained on the same samples"
    assert ranks[0] | ranks[1] == set(expected_samples(tmp_path / "ds", "train"))

    (ckpt,) = (tmp_path / "run").rglob("last.ckpt")
    logger = '{"class_path": "CSVLogger", "init_args": {"save_dir": "val"}}'
    main(["validate", *streamed_run("--trainer.logger", logger, "--ckpt_path", str(ckpt))])
    in_fit, alone = metrics(tmp_path / "fit"), metrics(tmp_path / "val")
    assert "val/mIoU" in alone and alone.keys() == in_fit.keys()
    for name, value in alone.items():
        assert in_fit[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_a_killed_streamed_run_resumes_mid_epoch_with_ckpt_path_last(tmp_path, capfd):
    # 16 samples in batches of 2: 8 steps an epoch, a checkpoint after every step; the run is
    # killed (SIGKILL) mid-epoch and resumed: the rest of the epoch, each sample once in all.
    write_folder_dataset(tmp_path / "ds", {"train": 16, "val": 2})
    optimize(tmp_path / "ds", "shards", "--num_workers", "2", "--chunk_bytes", "20KB")
    args = [
        "--trainer.max_epochs", "1", "--trainer.default_root_dir", "run",
        "--data.num_workers", "2", "--trainer.limit_val_batches", "0",
    ]  # fmt: skip
    first = streamed_run(*args, record="first", delay=0.3, every_step=True)
    last = tmp_path / "run/checkpoints/last.ckpt"
    proc = subprocess.Popen(
        seglab_command("fit", *first), cwd=tmp_path, env=environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    saved = 0
    while saved < 3:
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        if last.exists():
            saved = torch.load(last, weights_only=True)["global_step"]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    saved = torch.load(last, weights_only=True)["global_step"]
    assert 3 <= saved < 8

    resumed = streamed_run(*args, record="second", every_step=True)
    main(["fit", *resumed, "--ckpt_path", "last"])
    assert f"--ckpt_path last: {Path('run/checkpoints/last.ckpt')}" in capfd.readouterr().err
    assert torch.load(last, weights_only=True)["global_step"] == 8

    before = [(step, name) for _, step, name in recorded(tmp_path / "first") if step < saved]
    after = [(step, name) for _, step, name in recorded(tmp_path / "second")]
    assert min(step for step, _ in after) == saved, "the resumed run starts at the saved step"
    trained = Counter(name for _, name in before + after)
    assert set(trained) == set(expected_samples(tmp_path / "ds", "train"))
    assert set(trained.values()) == {1}, f"trained twice: {trained}"


# --- an object store --------------------------------------------------------------------------
@pytest.fixture
def s3_bucket(monkeypatch):
    """A local S3-compatible server (moto) with one bucket; boto3 finds it through the usual
    environment. LitData's obstore client refuses plain-HTTP endpoints (real object stores speak
    HTTPS) and offers no option for it: the test allows HTTP in its client options."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from litdata.streaming import downloader

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setitem(downloader._OBSTORE_CLIENT_OPTIONS, "allow_http", True)
    boto3.client("s3").create_bucket(Bucket="seglab")
    yield "s3://seglab"
    server.stop()


def test_optimize_to_and_stream_from_an_s3_url(tmp_path, s3_bucket):
    root = folder_dataset(tmp_path / "ds", train=5, val=3)
    url = f"{s3_bucket}/shards"
    optimize(root, url, "--num_workers", "2", "--chunk_bytes", "20KB")
    assert not Path("shards").exists()

    data = StreamingDataModule(
        input_dir=url, batch_size=2, crop_size=32, num_workers=0, chunk_cache_dir="chunks"
    )
    assert data.num_classes == 3
    val = data.source("val")
    assert_same_samples([val.read(i) for i in range(len(val))], expected_samples(root, "val"))
    names = [name for batch in data.train_dataloader() for name in batch["name"]]
    assert len(names) == 6 and len(set(names)) == 6  # 6 samples in 3 full batches, each once
    assert set(names) == set(expected_samples(root, "train"))
