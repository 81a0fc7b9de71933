"""How a module records its injected parts (network, loss, optimizer, schedule) in its
hyper-parameters, so that a checkpoint rebuilds them with ``load_from_checkpoint``.

Checkpoints are read with ``torch.load(weights_only=True)``: hyper-parameters must be plain data.
An injected object is recorded as the ``class_path``/``init_args`` a LightningCLI config would give
it, which Lightning's ``instantiate_module`` turns back into the object when the checkpoint is
loaded. Built by the ``seglab`` command (or any LightningCLI), the parsed config itself is recorded.
Built in Python, an object is described by what it says about itself: a class, a
``functools.partial`` of one (how Python code and jsonargparse give an ``OptimizerCallable``), or an
object with Lightning's ``hparams`` (seglab's losses, and any ``HyperparametersMixin``). Anything
else is recorded with a warning: an ``nn.Module`` without ``hparams`` by its class alone (loading
builds it with its defaults), anything else (a lambda) not at all (loading uses the module's
default), unless it is passed to ``load_from_checkpoint``.
"""

from __future__ import annotations

import inspect
from typing import Any

from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from seglab.optim import factory_target

PLAIN = (type(None), bool, int, float, str)
UNRECORDED = object()  # what ``describe`` gives for a function: leave the setting out


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_plain(value: Any) -> bool:
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def describe(value: Any, option: str) -> Any:
    """Plain data that rebuilds ``value`` through a LightningCLI parser (see the module docstring);
    ``option`` names it in the warning for objects that cannot be described; ``UNRECORDED`` for
    what can only be left out."""
    if _is_plain(value):
        return value
    if isinstance(value, list | tuple):
        return [describe(v, option) for v in value]
    if isinstance(value, dict):
        return {k: describe(v, option) for k, v in value.items()}
    target, keywords = factory_target(value)
    if target is not None:
        described = {"class_path": class_path(target)}
        return {**described, "init_args": describe(keywords, option)} if keywords else described
    if isinstance(value, HyperparametersMixin):
        accepted = inspect.signature(type(value)).parameters
        init_args = {k: v for k, v in value.hparams.items() if k in accepted}
        return {"class_path": class_path(type(value)), "init_args": describe(init_args, option)}
    module = isinstance(value, nn.Module)
    what = f"a {type(value).__name__} without hparams" if module else "not a class or a partial"
    rank_zero_warn(
        f"{option} is not recorded in checkpoints ({what}): load_from_checkpoint builds "
        f"{'it with its defaults' if module else 'the default'} unless you pass "
        f"{option.rpartition('.')[2]}=... to it (or derive your class from lightning's "
        "HyperparametersMixin and call self.save_hyperparameters())"
    )
    return {"class_path": class_path(type(value))} if module else UNRECORDED
