"""``seglab export``: a checkpoint's network as ONNX, TorchScript or an smp model directory.

seglab export --ckpt_path last.ckpt --output_dir exported [--formats onnx torchscript smp]
              [--opset 17] [--config experiments/X.yaml ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning.pytorch.cli import LightningArgumentParser

from seglab.cli.experiment import ExperimentCommand
from seglab.inference.export import ExportError, Format, export


class ExportCommand(ExperimentCommand):
    name = "export"
    description = "A checkpoint's network as ONNX, TorchScript or an smp model directory."

    def add_command_arguments(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str, required=True, help="a seglab checkpoint")
        parser.add_argument("--output_dir", type=str, required=True, help="where files go")
        parser.add_argument(
            "--formats",
            type=Format,
            nargs="+",
            default=["onnx", "torchscript"],
            help="what to write",
        )
        parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
        parser.add_argument(
            "--input",
            type=Literal["float", "uint8"],
            default="float",
            help="what ONNX/TorchScript take: the normalised float image, or the uint8 RGB image "
            "(normalised inside, with the checkpoint's mean/std)",
        )

    def run(self) -> int:
        """Writes every requested format that can be written; ``written`` holds their paths. A
        format that fails does not stop the others; the command then fails naming it."""
        module = self.trained_module()
        self.written: dict[str, Path]
        self.written, failed = export(
            module.model,
            module.size_divisor,
            self.config.output_dir,
            self.config.formats,
            in_channels=int(module.hparams.in_channels),
            opset=self.config.opset,
            metadata=module.metadata(),
            uint8_input=self.config.input == "uint8",
        )
        if failed:
            raise ExportError("; ".join(f"{fmt}: {why}" for fmt, why in failed.items()))
        return 0
