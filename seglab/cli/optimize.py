"""``seglab optimize``: write an experiment's splits into LitData's optimized format, once, for
``seglab.StreamingDataModule`` to stream on every node.

    seglab optimize --config experiments/X.yaml --output_dir DIR_OR_URL [--data.* ...]
                    [--splits train val] [--num_workers 4] [--chunk_bytes 64MB] [--overwrite true]

It reads the experiment exactly as ``seglab fit`` does (the same ``--config`` and overrides), every
sample through ``SegmentationDataset.read`` as training and ``seglab check-data`` read it: a bad
sample stops the write with a message naming its file. ``DIR_OR_URL/<split>/`` receives the shards
and ``seglab.json`` (classes, palette, normalisation, ``ignore_index``).
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.cli import LightningArgumentParser

from seglab.cli.experiment import ExperimentCommand
from seglab.data.streaming import optimize_split, split_dir
from seglab.errors import ConfigError


class OptimizeCommand(ExperimentCommand):
    name = "optimize"
    description = "Write an experiment's splits as LitData shards for StreamingDataModule."

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--output_dir",
            type=str | None,
            default=None,
            help="a directory or object-store URL (s3://bucket/prefix); one folder per split",
        )
        parser.add_argument(
            "--splits",
            type=list[Literal["train", "val", "test"]],
            default=["train", "val"],
            help="the splits to write",
        )
        parser.add_argument(
            "--num_workers", type=int, default=4, help="processes reading and writing samples"
        )
        parser.add_argument(
            "--chunk_bytes", type=str, default="64MB", help="the size of one shard (LitData chunk)"
        )
        parser.add_argument(
            "--overwrite", type=bool, default=False, help="replace shards already written there"
        )
        parser.add_argument(
            "--storage_options",
            type=dict[str, Any] | None,
            default=None,
            help="LitData's object-store client options (S3: boto3.client's, e.g. endpoint_url)",
        )

    def run(self) -> int:
        config = self.config
        if not config.output_dir:
            raise ConfigError("--output_dir is required: a directory or an s3:// (gs://) URL")
        if config.num_workers < 1:
            raise ConfigError(f"--num_workers must be at least 1, got {config.num_workers}")
        data = self.seglab_datamodule()
        total = 0
        for split in config.splits:
            target = split_dir(config.output_dir, split)
            print(f"seglab optimize: writing the {split} split to {target}")
            written = optimize_split(
                data,
                split,
                config.output_dir,
                num_workers=config.num_workers,
                chunk_bytes=config.chunk_bytes,
                overwrite=config.overwrite,
                storage_options=config.storage_options,
            )
            total += written.bytes
            print(
                f"{split}: {written.samples} samples in {written.chunks} chunks, "
                f"{written.bytes / 2**20:.1f} MiB, {written.seconds:.1f} s "
                f"({written.samples / max(written.seconds, 1e-9):.1f} samples/s) -> "
                f"{written.output_dir}"
            )
        print(f"\nWrote {total / 2**20:.1f} MiB to {config.output_dir}; train on it with")
        print(f"  --data seglab.StreamingDataModule --data.input_dir {config.output_dir}")
        return 0
