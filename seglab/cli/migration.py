"""What the settings of seglab 0.1 became, so that an old config or checkpoint is told what to
write.

seglab 0.1's ``SegmentationModule`` took its losses, optimizers and schedules by name, with their
options as flat arguments; they are injected classes now (``class_path``/``init_args``).
"""

from __future__ import annotations

import re

MOVED_SETTINGS = {
    "scheduler": "model.lr_scheduler: {class_path: seglab.optim.PolyLR} (or CosineLR, or null "
    "for a constant rate)",
    "warmup_steps": "model.lr_scheduler.init_args.warmup_steps (seglab.optim.PolyLR)",
    "warmup_ratio": "model.lr_scheduler.init_args.warmup_ratio (seglab.optim.PolyLR)",
    "poly_power": "model.lr_scheduler.init_args.power (seglab.optim.PolyLR)",
    "min_lr_ratio": "model.lr_scheduler.init_args.min_lr_ratio (seglab.optim.PolyLR)",
    "momentum": "model.optimizer: {class_path: torch.optim.SGD, init_args: {momentum: 0.9}}",
    "class_weights": "model.loss: {class_path: seglab.losses.CrossEntropyLoss, init_args: "
    "{class_weights: ...}}",
    "class_weight_cap": "model.loss.init_args.class_weight_cap (seglab.losses.CrossEntropyLoss)",
    "label_smoothing": "model.loss.init_args.label_smoothing (seglab.losses.CrossEntropyLoss)",
    "ohem_threshold": "model.loss: {class_path: seglab.losses.OhemCrossEntropyLoss, init_args: "
    "{threshold: ...}}",
    "ohem_min_kept": "model.loss.init_args.min_kept (seglab.losses.OhemCrossEntropyLoss)",
    "palette": "nothing: the data module's palette is recorded when training starts",
}
# seglab 0.1's names of the optimizers and schedules, and the classes they were.
OPTIMIZER_CLASSES = {
    "adamw": "torch.optim.AdamW",
    "adam": "torch.optim.Adam",
    "sgd": "torch.optim.SGD",
}
SCHEDULE_CLASSES = {
    "poly": "seglab.optim.PolyLR",
    "cosine": "seglab.optim.CosineLR",
    "constant": "null",
}


def old_form_hint(message: str) -> str | None:
    """One line saying what to write instead, when a parser error is about a setting of seglab 0.1
    (an option that moved, or an optimizer or schedule given by name); None otherwise."""
    for key, where in MOVED_SETTINGS.items():
        if re.search(rf"\bmodel\.{key}\b", message):
            return f"model.{key} is a setting of seglab 0.1; write {where}"
    option = re.search(r"\bmodel\.(optimizer|lr_scheduler)\b", message)
    value = re.search(r"import path string: (\w+)", message)  # jsonargparse's words for a name
    if option is not None and value is not None:
        option, value = option.group(1), value.group(1)
        classes = OPTIMIZER_CLASSES if option == "optimizer" else SCHEDULE_CLASSES
        if value.lower() in classes:
            return f"model.{option}: give a class, not seglab 0.1's name {value!r}: " + (
                f"model.{option}: {classes[value.lower()]}"
            )
    return None


def old_form_value(key: str, value: object) -> bool:
    """Whether a recorded model setting has seglab 0.1's form (an optimizer or schedule by name)."""
    return key in ("optimizer", "lr_scheduler") and isinstance(value, str)
