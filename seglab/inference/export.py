"""A trained network as files that run without seglab: ONNX, TorchScript, or smp's own format.

ONNX and TorchScript give logits ``(N, C, H, W)``, with batch, height and width dynamic: the graph
pads the input to the output stride and crops the logits back, like ``SegmentationModule.forward``,
but unconditionally, so tracing records the padding for every size instead of the branch taken by
the example input. Their input is the normalised float image, or with ``input="uint8"`` the RGB
uint8 image itself (``(N, 3, H, W)``; the normalisation is part of the graph). Each file is run on
two input sizes and compared with PyTorch (ONNX with onnxruntime when it is installed). ``smp``
writes ``config.json`` + ``model.safetensors`` for ``segmentation_models_pytorch.from_pretrained``.

Every export carries what a user of the model needs to know (``metadata``: the input it takes and
its normalisation, channel order, class names, palette, ``ignore_index``): in ``seglab.json`` beside
the files, in the ONNX model's metadata (key ``seglab``), and in the TorchScript archive
(``torch.jit.load(path, _extra_files={"seglab.json": ""})``).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.data.normalize import normalize
from seglab.errors import ConfigError, SeglabError

Format = Literal["onnx", "torchscript", "smp"]
FORMATS: tuple[str, ...] = Format.__args__
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts", "smp": "smp"}
# A float32 network's output, computed by another runtime, differs by rounding: relative to the
# logits' magnitude, not absolutely (logits of a trained model reach hundreds).
RELATIVE_TOLERANCE = 1e-4


class ExportError(SeglabError):
    """An exported file that does not reproduce PyTorch, or a format that could not be written."""


class ExportModel(nn.Module):
    """The network of a ``SegmentationModule`` with its stride padding, fit for tracing; with
    ``mean``/``std`` it takes uint8 RGB images and normalises them itself."""

    def __init__(
        self,
        net: nn.Module,
        size_divisor: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.size_divisor = size_divisor
        self.normalise = mean is not None
        if mean is not None and std is not None:  # seglab.data.normalize, as in training
            self.register_buffer("mean", torch.tensor(mean))
            self.register_buffer("std", torch.tensor(std))

    def forward(self, image: Tensor) -> Tensor:
        if self.normalise:
            image = normalize(image, self.mean, self.std)
        h, w = image.shape[-2], image.shape[-1]
        d = self.size_divisor
        padded = F.pad(image, (0, (d - w % d) % d, 0, (d - h % d) % d))
        return self.net(padded)[..., :h, :w]


def _require(module: str, fmt: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"--formats {fmt}: the {module} package is not installed; pip install 'seglab[export]'"
        )


def export_onnx(
    model: nn.Module, example: Tensor, path: Path, opset: int = 17, metadata: str = "{}"
) -> Path:
    """ONNX with dynamic batch, height and width (TorchScript-based exporter: it keeps the
    shape arithmetic of the padding symbolic), ``metadata`` under the model's ``seglab`` key."""
    _require("onnx", "onnx")
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=opset,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {"seglab": metadata})
    onnx.save(graph, str(path))
    return path


def export_torchscript(model: nn.Module, example: Tensor, path: Path, metadata: str = "{}") -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    torch.jit.save(traced, str(path), _extra_files={"seglab.json": metadata})
    return path


def export_smp(net: nn.Module, path: Path) -> Path:
    """smp's ``save_pretrained`` directory; its config asks for no pretrained encoder download when
    loaded back (the trained weights are in the file)."""
    if not hasattr(net, "save_pretrained"):
        raise ConfigError(
            f"--formats smp: {type(net).__name__} is not an smp model; only smp architectures "
            "export to smp's format (use onnx or torchscript)"
        )
    net.config["encoder_weights"] = None
    net.save_pretrained(str(path))
    return path


def run_exported(path: Path, image: Tensor) -> Tensor | None:
    """Logits of an exported file; None for ONNX when onnxruntime is not installed."""
    if path.suffix == ".onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": image.numpy()})[0])
    return torch.jit.load(str(path))(image)


@dataclass
class Agreement:
    """How closely an exported file reproduces PyTorch: the largest absolute difference, the same
    relative to the largest logit, and the share of pixels whose class agrees."""

    max_abs_diff: float
    relative: float
    class_agreement: float

    def __str__(self) -> str:
        return (
            f"max |diff| {self.max_abs_diff:.1e} ({self.relative:.1e} of the logits' scale), "
            f"class ids agree on {100 * self.class_agreement:.2f}% of pixels"
        )


def compare_logits(got: Tensor, expected: Tensor, rtol: float = RELATIVE_TOLERANCE) -> Agreement:
    """Raises ``ExportError`` when ``got`` is not ``expected`` up to rounding: a difference above
    ``rtol`` times the logits' scale, or a class id that differs where the two best classes are
    further apart than the rounding could bridge."""
    scale = float(expected.abs().max().clamp_min(1e-12))
    diff = (got - expected).abs()
    max_diff = float(diff.max())
    top2 = expected.topk(min(2, expected.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1]
    differs = got.argmax(1) != expected.argmax(1)
    agreement = Agreement(max_diff, max_diff / scale, 1.0 - float(differs.float().mean()))
    if agreement.relative > rtol or bool((differs & (margin > 2 * max_diff)).any()):
        raise ExportError(f"differs from PyTorch: {agreement} (tolerance {rtol:.0e} relative)")
    return agreement


def example_input(batch: int, channels: int, h: int, w: int, uint8: bool) -> Tensor:
    """A reproducible random input: uint8 levels, or a normalised-looking float image."""
    g = torch.Generator().manual_seed(h)
    if uint8:
        return torch.randint(0, 256, (batch, channels, h, w), generator=g, dtype=torch.uint8)
    return torch.randn(batch, channels, h, w, generator=g)


@torch.no_grad()
def check_exported(
    path: Path,
    model: nn.Module,
    sizes: Sequence[tuple[int, int]],
    in_channels: int = 3,
    uint8: bool = False,
) -> Agreement | None:
    """The worst agreement of an exported file with PyTorch over ``sizes`` (None for ONNX
    without onnxruntime); ``ExportError`` naming the file when it does not reproduce PyTorch."""
    worst: Agreement | None = None
    for batch, (h, w) in enumerate(sizes, 1):
        image = example_input(batch, in_channels, h, w, uint8)
        got = run_exported(path, image)
        if got is None:
            return None
        expected = model(image)
        if got.shape != expected.shape:
            raise ExportError(
                f"{path}: output {tuple(got.shape)} for input {(batch, h, w)}, "
                f"PyTorch gives {tuple(expected.shape)}"
            )
        try:
            agreement = compare_logits(got, expected)
        except ExportError as e:
            raise ExportError(f"{path}: {e} at {h}x{w}") from None
        if worst is None or agreement.relative > worst.relative:
            worst = agreement
    return worst


def export(
    net: nn.Module,
    size_divisor: int,
    output_dir: str | Path,
    formats: Sequence[str] = ("onnx", "torchscript"),
    in_channels: int = 3,
    opset: int = 17,
    metadata: dict[str, Any] | None = None,
    uint8_input: bool = False,
    example_size: tuple[int, int] = (256, 256),
    check_sizes: Sequence[tuple[int, int]] = ((256, 256), (200, 333)),
) -> tuple[dict[str, Path], dict[str, str]]:
    """Writes each format independently and checks it against PyTorch. Returns the written paths
    and, per format that failed, why (a missing package, a mismatch). With ``uint8_input`` the
    ONNX/TorchScript graphs take uint8 RGB images and normalise them with ``metadata``'s
    ``mean``/``std``."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"--formats: unknown {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    metadata = dict(metadata or {})
    if uint8_input and (metadata.get("mean") is None or metadata.get("std") is None):
        raise ConfigError(
            "--input uint8: the checkpoint does not record the model's normalisation (mean/std); "
            "export with --input float, or retrain with a data module that has mean/std"
        )
    metadata["input"] = "uint8 RGB (N, 3, H, W)" if uint8_input else "normalised float (N, C, H, W)"
    text = json.dumps(metadata, indent=2)
    normalise = (metadata["mean"], metadata["std"]) if uint8_input else (None, None)
    model = ExportModel(net.eval(), size_divisor, *normalise).eval()
    example = example_input(1, in_channels, *example_size, uint8_input)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "seglab.json").write_text(text)
    written: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for fmt in formats:
        path = output_dir / FILE_NAMES[fmt]
        try:
            if fmt == "smp":
                written[fmt] = export_smp(net, path)
                (path / "seglab.json").write_text(text)
                print(f"smp: {path} (load with segmentation_models_pytorch.from_pretrained)")
                continue
            if fmt == "onnx":
                export_onnx(model, example, path, opset, text)
            else:
                export_torchscript(model, example, path, text)
            agreement = check_exported(path, model, check_sizes, in_channels, uint8_input)
        except SeglabError as e:
            failed[fmt] = str(e)
            continue
        status = (
            "not checked: pip install 'seglab[export]' for onnxruntime"
            if agreement is None
            else f"checked at {len(check_sizes)} sizes: {agreement}"
        )
        print(f"{fmt}: {path} ({status})")
        written[fmt] = path
    return written, failed
