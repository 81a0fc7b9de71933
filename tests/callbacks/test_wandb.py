"""A short ``fit`` tracked by W&B in offline mode, read back from the run file W&B would sync."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import lightning as L
import pytest
import wandb
from lightning.pytorch.loggers import WandbLogger
from wandb.proto import wandb_internal_pb2 as pb

from seglab import SegmentationModule, SyntheticDataModule
from seglab.cli import main
from tests.conftest import TINY


def read_wandb_records(path: Path) -> list[pb.Record]:
    """Records of a ``run-*.wandb`` file: a 7-byte header (``:W&B``, magic, version), then the
    LevelDB log format, 32 KiB blocks of chunks with a 7-byte header (crc32c, length, type:
    1 full, 2 first, 3 middle, 4 last) each, block tails under 7 bytes left as padding."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
        elif kind == 0 and length == 0:
            break
    return records


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs with the W&B logger and all of seglab's logging callbacks."""
    root = tmp_path_factory.mktemp("wandb")
    args = [a for a in TINY]
    del args[args.index("--trainer.logger") : args.index("--trainer.logger") + 2]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("WANDB_MODE", "offline")
        fit = main(
            [
                "fit",
                *args,
                "--trainer.max_epochs=2",
                "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
                f"--trainer.logger.save_dir={root}",
                "--trainer.logger.project=seglab-test",
                "--trainer.callbacks+=seglab.callbacks.PredictionImages",
                "--trainer.callbacks.num_images=2",
                "--trainer.callbacks+=seglab.callbacks.ClassMetricsReport",
                "--trainer.callbacks+=seglab.callbacks.BestModelArtifact",
                "--model.lr=0.0007",
            ]
        )
        # What the end of the process does: finish the run, stop the service (flushes the file).
        fit.trainer.logger.experiment.finish()
        wandb.teardown()
    (path,) = root.glob("wandb/offline-run-*/run-*.wandb")
    return fit, path.parent, read_wandb_records(path)


def _history(records) -> list[dict[str, object]]:
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append(
                {
                    it.key or "/".join(it.nested_key): json.loads(it.value_json)
                    for it in r.history.item
                }
            )
    return rows


def _config(records) -> dict[str, object]:
    config: dict[str, object] = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            for it in r.config.update:
                config[it.key or "/".join(it.nested_key)] = json.loads(it.value_json)
    return config


def test_the_resolved_config_is_the_run_config(run):
    _, _, records = run
    config = _config(records)
    assert config["model"]["lr"] == 0.0007  # from the command line, not the YAML's 0.003
    assert config["data"]["class_path"] == "seglab.SyntheticDataModule"
    assert config["trainer"]["max_epochs"] == 2
    assert config["data"]["init_args"]["crop_size"] == 64


def test_validation_metrics_are_in_the_history(run):
    fit, _, records = run
    values = [row["val/mIoU"] for row in _history(records) if "val/mIoU" in row]
    assert len(values) == 2  # one per epoch
    assert values[-1] == pytest.approx(float(fit.trainer.callback_metrics["val/mIoU"]))


def test_per_class_table_and_confusion_matrix_are_logged(run):
    fit, run_dir, records = run
    rows = [row for row in _history(records) if "val/per_class/path" in row]
    assert len(rows) == 2
    table = json.loads((run_dir / "files" / rows[-1]["val/per_class/path"]).read_text())
    assert table["columns"] == ["class", "IoU", "Dice", "accuracy"]
    assert [r[0] for r in table["data"]] == fit.model.class_names
    circle = next(r for r in table["data"] if r[0] == "circle")
    assert circle[1] == pytest.approx(float(fit.trainer.callback_metrics["val/IoU/circle"]))

    chart = _config(records)["_wandb/visualize/val/confusion_matrix"]
    assert chart["panel_config"]["panelDefId"] == "wandb/confusion_matrix/v1"
    (cm_row,) = [row for row in rows if "val/confusion_matrix_table/path" in row][-1:]
    cm = json.loads((run_dir / "files" / cm_row["val/confusion_matrix_table/path"]).read_text())
    assert cm["columns"] == ["Actual", "Predicted", "nPredictions"] and len(cm["data"]) == 36
    # built from the counts: the cells hold every labelled validation pixel (3 images of 64x64)
    assert sum(cell[2] for cell in cm["data"]) == int(fit.model.last_confusion["val"].sum())
    assert 0 < sum(cell[2] for cell in cm["data"]) <= 3 * 64 * 64


def test_prediction_images_carry_masks_and_class_labels(run):
    _, run_dir, records = run
    images = [row for row in _history(records) if "predictions/val/all_masks" in row]
    assert len(images) == 2 and images[-1]["predictions/val/count"] == 2
    masks = images[-1]["predictions/val/all_masks"]
    assert {"ground_truth", "predictions"} <= set(masks[0])
    assert (run_dir / "files" / masks[0]["predictions"]["path"]).is_file()
    labels = _config(records)["_wandb"]["mask/class_labels"]
    values = next(iter(labels.values()))["value"]
    assert values["1"] == "circle" and values["255"] == "ignore"


def test_images_and_tables_are_logged_at_the_step_of_their_validation_metrics(run):
    _, _, records = run
    history = _history(records)

    def steps(key: str) -> list[int]:
        return [row["trainer/global_step"] for row in history if key in row]

    assert steps("val/mIoU") == steps("predictions/val/count") == steps("val/per_class/path")
    assert len(steps("val/mIoU")) == 2


def test_best_checkpoint_is_a_model_artifact_with_its_metrics(run):
    fit, run_dir, records = run
    artifacts = [
        r.artifact
        for r in records
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model"
    ]
    assert len(artifacts) == 1
    artifact = artifacts[0]
    assert "best" in artifact.aliases
    assert [entry.path for entry in artifact.manifest.contents] == ["model.ckpt"]
    (entry,) = artifact.manifest.contents  # a copy in the run's own folder, not a user-wide stage
    assert Path(entry.local_path) == run_dir / "files" / "model.ckpt"
    checkpoint = fit.trainer.checkpoint_callback
    assert Path(entry.local_path).read_bytes() == Path(checkpoint.best_model_path).read_bytes()
    metadata = json.loads(artifact.metadata)
    assert metadata["checkpoint"] == Path(checkpoint.best_model_path).name
    assert metadata["val/mIoU"] == pytest.approx(float(checkpoint.best_model_score))
    assert "val/IoU/circle" in metadata and "epoch" in metadata


def test_without_the_command_the_run_config_holds_the_model_and_the_data(tmp_path, monkeypatch):
    """A plain Trainer, WandbLogger and seglab's modules, as another project would use them."""

    monkeypatch.chdir(tmp_path)
    data = SyntheticDataModule(image_size=32, num_train=2, num_val=2, batch_size=2, num_workers=0)
    model = SegmentationModule(encoder_name="tu-test_resnet", num_classes=data.num_classes, lr=0.02)
    logger = WandbLogger(save_dir=str(tmp_path), project="seglab-test", offline=True)
    L.Trainer(max_steps=1, logger=logger, enable_progress_bar=False).fit(model, data)
    logger.experiment.finish()
    wandb.teardown()
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    config = _config(read_wandb_records(path))
    assert config["lr"] == 0.02 and config["encoder_name"] == "tu-test_resnet"
    assert config["data"]["class_path"] == "seglab.data.datasets.synthetic.SyntheticDataModule"
    assert config["data"]["init_args"]["image_size"] == 32
    assert config["data"]["init_args"]["augment"]["hue"] == 0.02
