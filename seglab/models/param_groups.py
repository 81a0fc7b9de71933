"""Fine-tuning parameter groups: a pretrained backbone learns slower than a freshly initialised
head.

Every parameter of the module is in a group: those of the ``backbone`` submodule with
``lr_mult = backbone_lr_mult``, all others (decoder, head, and anything a subclass adds) with
``lr_mult = 1`` (``seglab.optim`` applies the multiplier on top of the schedule). Weight decay is
not applied to biases and normalisation parameters (every 0-/1-d tensor): decaying them only pulls
the normalisation scales towards zero and hurts accuracy (Goyal et al., 2017; timm).
"""

from __future__ import annotations

from torch import nn


def is_no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and norm weights (all parameters with fewer than two dimensions)."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(
    module: nn.Module,
    backbone: nn.Module | None,
    backbone_lr_mult: float = 0.1,
    lr: float | None = None,
    weight_decay: float | None = None,
) -> list[dict]:
    """Groups for ``torch.optim`` over every parameter of ``module``: those of ``backbone`` (any
    submodule, or None) and the rest, each split into a decayed and a non-decayed half. Each group
    has a ``name`` (for logs and tests) and its ``lr_mult``; ``lr`` and the decayed groups'
    ``weight_decay`` are set only when given (else the optimizer's own apply); non-decayed groups
    have ``weight_decay`` 0. Empty groups are dropped."""
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[str, dict] = {}
    for name, param in module.named_parameters():
        part = "backbone" if id(param) in in_backbone else "head"
        decay = not is_no_decay(name, param)
        key = f"{part}{'' if decay else '_no_decay'}"
        if key not in groups:
            group = {"name": key, "params": [], "lr_mult": 1.0}
            if part == "backbone":
                group["lr_mult"] = backbone_lr_mult
            if lr is not None:
                group["lr"] = lr
            if not decay:
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = weight_decay
            groups[key] = group
        groups[key]["params"].append(param)
    return list(groups.values())
