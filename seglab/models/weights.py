"""Pretrained encoder weights, offline first.

``model.encoder_weights`` is either
  * a named weight set (``imagenet`` ...): smp encoders fetch ``smp-hub/<encoder>.<weights>`` and
    timm encoders (``tu-<name>``) their default pretrained tag through the Hugging Face hub cache
    (``HF_HOME``) or torch hub (``TORCH_HOME``); or
  * a local file (one rule everywhere, ``is_weights_file``: a path with a weights suffix or a
    directory part, or any existing file): ``.pth``/``.pt``/``.bin``
    (``torch.load(weights_only=True)``), ``.safetensors``, or a Lightning ``.ckpt``. A file of a
    whole seglab or smp model gives its encoder's tensors (``model.encoder.*``, ``encoder.*``); a
    classification checkpoint (timm's ``model.state_dict()``, a torchvision or hub file) gives the
    encoder its layers and drops exactly the layers the encoder does not have (the classifier, and
    heads such as EfficientNet's ``conv_head``/``bn2``: said in one line); anything else that does
    not fit is an error naming the keys. The same for every architecture, smp's and the classic
    ones.

Cluster nodes often have no internet. Cached weights are loaded with the hub forced offline (no
network call at all); weights that are missing while the host is unreachable (probed with a 3 s
timeout, or ``HF_HUB_OFFLINE=1``) fail at once with a message saying how to provide them, instead of
a hang or a retry loop deep inside the model constructor.

``seglab weights fetch --config X.yaml`` (on a login node) fills the cache, ``seglab weights list``
shows it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from seglab.compat import hub_offline
from seglab.errors import ConfigError, WeightsUnavailableError

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
PROBE_TIMEOUT_S = 3.0


def is_weights_file(encoder_weights: str | bool | None) -> bool:
    """Whether ``encoder_weights`` names a local file rather than a weight set: a weights suffix,
    a directory part, or an existing file. A path is never taken for a download."""
    if not isinstance(encoder_weights, str):
        return False
    return (
        encoder_weights.endswith(WEIGHT_FILE_SUFFIXES)
        or os.sep in encoder_weights
        or "/" in encoder_weights
        or Path(encoder_weights).expanduser().is_file()
    )


# --- local files ---------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file; a Lightning checkpoint gives its ``state_dict``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.encoder_weights: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    data = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict):
        raise ConfigError(
            f"model.encoder_weights: {path} holds a {type(data).__name__}, not tensors"
        )
    return {k: v for k, v in data.items() if isinstance(v, Tensor)}


def whole_model_encoder(state_dict: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """The encoder's tensors of a whole seglab (``model.encoder.*``) or smp (``encoder.*``) model,
    or None for any other file (a classification checkpoint)."""
    for prefix in ("model.encoder.", "encoder."):
        if any(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return None


def _layer(key: str) -> str:
    """The top-level layer a tensor belongs to (inside the ``model`` of a timm-based encoder)."""
    return ".".join(key.split(".")[: 2 if key.startswith("model.") else 1])


def load_encoder_weights(encoder: nn.Module, tensors: dict[str, Tensor], path: str | Path) -> None:
    """Loads ``tensors`` (read from ``path``) into ``encoder``. Keys of a plain timm checkpoint
    get the ``model.`` prefix of timm-based encoders; tensors of layers the encoder does not have at
    all (a classification head) are dropped; any other missing, unexpected or mis-shaped key is an
    error naming the keys."""
    target = encoder.state_dict()
    if not set(tensors) & set(target) and {f"model.{k}" for k in tensors} & set(target):
        tensors = {f"model.{k}": v for k, v in tensors.items()}
    layers = {_layer(k) for k in target}
    dropped = sorted({_layer(k) for k in tensors} - layers)
    tensors = {k: v for k, v in tensors.items() if _layer(k) in layers}
    missing = [k for k in target if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in tensors if k not in target]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in tensors.items()
        if k in target and v.shape != target[k].shape
    ]
    if missing or unexpected or shapes:
        problems = []
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
            if keys:
                problems.append(f"{len(keys)} {what}: {', '.join(keys[:8])}")
        if shapes:
            problems.append(
                f"{len(shapes)} shape mismatches (file vs encoder): {'; '.join(shapes[:5])}"
            )
        raise ConfigError(
            f"model.encoder_weights: {path} does not fit the encoder: " + "; ".join(problems)
        )
    encoder.load_state_dict(tensors, strict=False)
    if dropped:
        rank_zero_info(
            f"model.encoder_weights: {path}: left out {', '.join(dropped)} "
            "(not layers of the encoder)"
        )


# --- named weight sets ---------------------------------------------------------------------------
def weight_sources(encoder_name: str, encoder_weights: str) -> list[tuple[str, str, str | None]]:
    """Where a named weight set comes from: ``("hf", repo_id, revision)`` or
    ``("url", url, None)``."""
    if encoder_name.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder_name[3:])
        if cfg is None:
            raise ConfigError(
                f"model.encoder_name: timm has no pretrained weights for {encoder_name}"
            )
        if cfg.hf_hub_id:
            repo, _, revision = cfg.hf_hub_id.partition("@")
            return [("hf", repo, revision or None)]
        if cfg.url:
            return [("url", cfg.url, None)]
        raise ConfigError(f"model.encoder_weights: timm has no download source for {encoder_name}")
    import segmentation_models_pytorch as smp

    settings = smp.encoders.encoders[encoder_name]["pretrained_settings"]
    if encoder_weights not in settings:
        raise ConfigError(
            f"model.encoder_weights: encoder {encoder_name!r} has no weights {encoder_weights!r}; "
            f"choose from {sorted(settings)} or give a local file"
        )
    s = settings[encoder_weights]
    return [("hf", s["repo_id"], s.get("revision"))]


def _cached(kind: str, where: str, revision: str | None) -> bool:
    if kind == "url":
        return (
            Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(where).path).name
        ).is_file()
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(where, name, revision=revision), str)
        for name in ("model.safetensors", "pytorch_model.bin")
    )


def reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` (name resolution included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _host(kind: str, where: str) -> str:
    if kind == "url":
        return urlparse(where).hostname or where
    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or "huggingface.co"


@contextmanager
def named_weights_available(
    encoder_name: str, encoder_weights: str | bool | None
) -> Iterator[None]:
    """Runs the block (the model constructor) offline when the weights are cached; raises
    ``WeightsUnavailableError`` at once when they are not and cannot be downloaded."""
    if encoder_weights in (None, False):
        yield
        return
    sources = weight_sources(encoder_name, str(encoder_weights))
    if all(_cached(*s) for s in sources):
        with hub_offline():
            yield
        return
    from huggingface_hub import constants

    for kind, where, _ in sources:
        host = _host(kind, where)
        offline = kind == "hf" and constants.HF_HUB_OFFLINE
        if offline or not reachable(host):
            raise WeightsUnavailableError(
                f"model.encoder_weights: the {encoder_weights!r} weights of encoder "
                f"{encoder_name!r} ({where}) are not in the local cache and "
                + ("HF_HUB_OFFLINE is set" if offline else f"{host} cannot be reached")
                + ". Either fetch them where there is internet, into the cache this machine reads "
                f"(HF_HOME={constants.HF_HOME}, TORCH_HOME={torch.hub.get_dir()}): "
                "`seglab weights fetch` with the experiment's --config; or copy a weights file "
                "here and pass its path: --model.encoder_weights /path/to/encoder.pth (.pth, "
                ".safetensors or a seglab .ckpt); or train from scratch: "
                "--model.encoder_weights null."
            )
    yield


# --- cache management ---------------------------------------------------------------------------
def fetch(encoder_name: str, encoder_weights: str) -> None:
    """Downloads a named weight set into the cache by building the encoder once."""
    import segmentation_models_pytorch as smp

    weights = True if encoder_name.startswith("tu-") else encoder_weights
    with named_weights_available(encoder_name, encoder_weights):
        smp.encoders.get_encoder(encoder_name, weights=weights)


def list_cached() -> list[str]:
    """Lines describing the cached encoder weights (hub repos of smp and timm, torch hub files)."""
    lines = []
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                lines.append(
                    f"hf   {repo.repo_id}  {repo.size_on_disk / 1e6:.1f} MB  {repo.repo_path}"
                )
    except Exception as e:  # an absent or unreadable cache is not an error here
        lines.append(f"(no Hugging Face cache: {e})")
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for path in sorted(checkpoints.glob("*")) if checkpoints.is_dir() else []:
        lines.append(f"url  {path.name}  {path.stat().st_size / 1e6:.1f} MB  {path}")
    return lines
