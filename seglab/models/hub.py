"""A trained checkpoint as a standalone smp model directory (``config.json`` + ``model.safetensors``).

The directory loads without seglab: ``segmentation_models_pytorch.from_pretrained(directory)``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


def export_model(model: nn.Module, output_dir: str | Path) -> Path:
    """Saves an smp model with smp's own ``save_pretrained``; its config asks for no pretrained
    encoder download when loaded back (the trained weights are in the file)."""
    if not hasattr(model, "save_pretrained"):
        raise ValueError(
            f"{type(model).__name__} is not an smp model: only smp architectures export to smp's format"
        )
    model.config["encoder_weights"] = None
    model.save_pretrained(str(output_dir))
    return Path(output_dir)


def export_checkpoint(ckpt_path: str | Path, output_dir: str | Path) -> Path:
    """The network of a seglab checkpoint (``module.model``) as a standalone model directory."""
    from seglab.models.module import SegmentationModule

    # encoder_weights=None: the checkpoint holds the trained encoder, nothing to download.
    module = SegmentationModule.load_from_checkpoint(
        str(ckpt_path), map_location="cpu", encoder_weights=None
    )
    return export_model(module.model, output_dir)
