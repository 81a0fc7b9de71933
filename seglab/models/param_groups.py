"""Fine-tuning parameter groups: a pretrained backbone learns slower than a freshly initialised head.

Every parameter of the module is in a group: those under ``backbone`` at ``lr * backbone_lr_mult``,
all others (decoder, head, and anything a subclass adds) at ``lr``. Weight decay is not applied to
biases and normalisation parameters (every 0-/1-d tensor): decaying them only pulls the
normalisation scales towards zero and hurts accuracy (Goyal et al., 2017; timm).
"""

from __future__ import annotations

from torch import nn


def is_no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and norm weights (all parameters with fewer than two dimensions)."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(
    module: nn.Module,
    lr: float,
    backbone_lr_mult: float = 0.1,
    weight_decay: float = 1e-4,
    backbone: str = "model.encoder",
) -> list[dict]:
    """Groups for ``torch.optim`` over every parameter of ``module``: ``backbone`` (a submodule
    path) and the rest, each split into a decayed and a non-decayed half. Empty groups are
    dropped; every group has a ``name`` so logs and tests can tell them apart."""
    groups: dict[str, dict] = {}
    prefix = backbone + "."
    for name, param in module.named_parameters():
        part = "backbone" if name.startswith(prefix) else "head"
        decay = not is_no_decay(name, param)
        key = f"{part}{'' if decay else '_no_decay'}"
        if key not in groups:
            groups[key] = {
                "name": key,
                "params": [],
                "lr": lr * backbone_lr_mult if part == "backbone" else lr,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(param)
    return list(groups.values())
