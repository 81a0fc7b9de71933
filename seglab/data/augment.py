"""Training augmentation: its settings, its per-sample random parameters, and the one implementation
of the flip and photometric ops, on a batch ``(N, C, H, W)`` on whatever device it is.

Where it runs: in the loader workers, on each training sample as a batch of one, after the scale
and crop (``seglab.data.transforms.TrainTransform``), or, with ``data.augment_on_device: true``, on
the whole training batch after its transfer to the accelerator (the data module's
``on_after_batch_transfer``). Both places draw the same parameters and run the same code.

The ops and their distributions are torchvision's: ``ColorJitter``'s four ops with its factor
ranges, in a random order per sample; a gamma drawn uniformly from ``gamma``;
``GaussianBlur(5, (0.1, 1.5))`` (reflect padding) with probability ``blur_prob``; a horizontal flip
with probability 0.5, masks flipped alike and otherwise untouched (``BatchAugment.flip``: the one
flip, for images and masks, here and in the workers). The jitter runs in float32 on the [0, 255]
scale and is rounded once to uint8 levels (like the image it came from); gamma and normalisation are
then one 256-entry table per sample and channel, made by ``seglab.data.normalize.normalize`` (the
one normalisation) from the gamma-mapped levels. The result equals torchvision's float ops to within
half a level times gamma's slope (torchvision's uint8 path truncates after every op instead).

Images of other bands and types (``seglab.data.io``: any number of bands, ``uint8`` or ``float32``
raw values), by a fixed rule: saturation and hue mean something only for RGB and are skipped for
images that do not have 3 bands (as torchvision skips them for grey images); contrast blends each
band with its own mean when there are neither 1 nor 3 bands. ``float32`` raw-value images
(``apply_raw``; their range is unknown) take the flip, brightness (a factor on the raw values) and
per-band contrast in the drawn order, and the blur; saturation, hue and gamma are skipped, and
nothing is rounded or clamped. Normalisation is ``normalize``'s for every type.

Random parameters are drawn on the host with torch's generator (the default one, or a given
``torch.Generator``): deterministic under ``seed_everything`` (Lightning seeds every loader worker),
and the few choices that select work (which op, which samples blur) need no device synchronisation.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD, check_normalization, normalize
from seglab.errors import ConfigError

GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
BLUR_KERNEL = 5
BLUR_SIGMA = (0.1, 1.5)
# ColorJitter's op ids, as in torchvision: the order of application is a permutation of these.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


@dataclass
class Augment:
    """Training augmentation settings (``data.init_args.augment.*`` in a config), checked here.

    Args:
        scale_range: the image is resized by a factor drawn uniformly from this range, then cropped.
        max_class_ratio: below 1, a crop is drawn again (up to 10 times) while one class covers more
            than this share of its labelled pixels (mmsegmentation's ``cat_max_ratio``).
        hflip: flip half of the samples left to right (their masks alike).
        brightness, contrast, saturation, hue: ``ColorJitter``'s settings (0 turns an op off).
        gamma: range of the gamma drawn per sample (``[1, 1]``: off).
        blur_prob: probability of a 5x5 Gaussian blur with sigma drawn from (0.1, 1.5).
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    max_class_ratio: float = 1.0
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.1

    def __post_init__(self) -> None:
        for name in ("scale_range", "gamma"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise ConfigError(
                    f"data.augment.{name} must be [low, high] with 0 < low <= high, "
                    f"got {list(value)}"
                )
            setattr(self, name, value)
        if not 0 < self.max_class_ratio <= 1:
            raise ConfigError(
                f"data.augment.max_class_ratio must be in (0, 1], got {self.max_class_ratio}"
            )
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ConfigError(f"data.augment.hue must be in [0, 0.5], got {self.hue}")
        if not 0 <= self.blur_prob <= 1:
            raise ConfigError(f"data.augment.blur_prob must be in [0, 1], got {self.blur_prob}")


@dataclass
class AugmentParams:
    """Per-sample random parameters of a batch, on the host; an op that is off holds its
    identity."""

    flip: Tensor  # (N,) bool
    order: Tensor  # (N, 4) long: ColorJitter's op ids in the order they are applied
    brightness: Tensor  # (N,) factors; 1 = unchanged
    contrast: Tensor
    saturation: Tensor
    hue: Tensor  # (N,) shift in turns; 0 = unchanged
    gamma: Tensor  # (N,); 1 = unchanged
    blur: Tensor  # (N,) bool
    sigma: Tensor  # (N,) blur standard deviation in pixels


class BatchAugment:
    """Flip, colour jitter, gamma, blur and normalisation of ``(images, masks)`` batches.

    Args:
        augment: the settings (``scale_range`` and ``max_class_ratio`` are the loader's business and
            ignored here).
        mean, std: per-channel normalisation of images scaled to [0, 1].

    Call it on ``images`` uint8 ``(N, C, H, W)`` (or float in [0, 1]) and ``masks`` ``(N, H, W)``
    (or ``None``) on any device; returns float32 normalised images and the masks, flipped alike.
    Every sample draws its own parameters; grey images (``C == 1``) skip saturation and hue, as
    torchvision.
    """

    def __init__(
        self,
        augment: Augment | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.augment = a = augment or Augment()
        check_normalization(mean, std)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        # The ranges of the 12 uniform draws per sample: flip, 4 order keys, then ColorJitter's
        # factor ranges ([max(0, 1 - x), 1 + x]; hue [-hue, hue]), gamma, blur, sigma. An empty
        # range gives exactly its low end: the identity of an op that is off.
        ranges = [(0, 1)] * 5 + [(max(0.0, 1 - x), 1 + x) for x in (a.brightness, a.contrast)]
        ranges += [(max(0.0, 1 - a.saturation), 1 + a.saturation), (-a.hue, a.hue), a.gamma]
        ranges += [(0, 1), BLUR_SIGMA]
        self._low = torch.tensor([low for low, _ in ranges], dtype=torch.float64)
        self._span = torch.tensor([high - low for low, high in ranges], dtype=torch.float64)
        self._mean = torch.tensor(self.mean, dtype=torch.float64)  # for the per-batch table
        self._std = torch.tensor(self.std, dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draws ``n`` samples' parameters, all from one draw of torch's generator (the default
        one unless given); the op order is the ranks of 4 uniform draws, a uniform permutation."""
        u = torch.rand(n, 12, generator=generator, dtype=torch.float64)
        flip, *_, brightness, contrast, saturation, hue, gamma, blur, sigma = torch.addcmul(
            self._low, self._span, u
        ).unbind(1)
        return AugmentParams(
            flip=flip < (0.5 if self.augment.hflip else 0.0),
            order=u[:, 1:5].argsort(dim=1),
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            hue=hue,
            gamma=gamma,
            blur=blur < self.augment.blur_prob,
            sigma=sigma,
        )

    def __call__(
        self, images: Tensor, masks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        return self.apply(images, masks, self.sample(images.shape[0], generator))

    def apply(
        self, images: Tensor, masks: Tensor | None, params: AugmentParams
    ) -> tuple[Tensor, Tensor | None]:
        """The augmentation with given parameters (from :meth:`sample`)."""
        if images.ndim != 4 or images.shape[1] != len(self.mean):
            raise ValueError(
                f"BatchAugment expects images (N, {len(self.mean)}, H, W), "
                f"got {tuple(images.shape)}"
            )
        if masks is not None and masks.shape != images.shape[:1] + images.shape[2:]:
            raise ValueError(
                f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}"
            )
        # float32, planar (whatever the input's memory layout), on the [0, 255] scale
        images = self.flip(images, params)  # before the float copy: a quarter of the bytes
        x = _scratch("x", images.shape, torch.float32, images)
        if images.dtype == torch.uint8:
            x.copy_(images)
        else:
            torch.mul(images, 255.0, out=x).clamp_(0.0, 255.0)
        if masks is not None:
            masks = self.flip(masks, params)
        x = _color_jitter_(x, params)
        out = self._gamma_normalise(x, params.gamma)
        blurred = _rows(params.blur)
        if blurred:
            out = _on_rows(out, blurred, _blur, _select(params.sigma, blurred))
        return out, masks

    def augment_any(
        self, images: Tensor, masks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The data path's call: ``uint8`` images by ``apply``, ``float32`` raw values (bands of
        other types, ``seglab.data.io``) by ``apply_raw``."""
        params = self.sample(images.shape[0], generator)
        if images.dtype == torch.uint8:
            return self.apply(images, masks, params)
        return self.apply_raw(images, masks, params)

    def apply_raw(
        self, images: Tensor, masks: Tensor | None, params: AugmentParams
    ) -> tuple[Tensor, Tensor | None]:
        """The augmentation of ``float32`` raw-value images (see the module's docstring: flip,
        brightness, per-band contrast, blur, normalisation; no clamping)."""
        if images.ndim != 4 or images.shape[1] != len(self.mean):
            raise ValueError(
                f"BatchAugment expects images (N, {len(self.mean)}, H, W), "
                f"got {tuple(images.shape)}"
            )
        x = self.flip(images, params).to(torch.float32, copy=True)
        if masks is not None:
            masks = self.flip(masks, params)
        factors = torch.stack([params.brightness, params.contrast], dim=1).tolist()
        for i, order in enumerate(params.order.tolist()):
            for op in order:
                if op == BRIGHTNESS and factors[i][0] != 1:
                    x[i].mul_(factors[i][0])
                elif op == CONTRAST and factors[i][1] != 1:
                    f = factors[i][1]
                    x[i].mul_(f).add_(x[i].mean(dim=(1, 2), keepdim=True) * (1 - f))
        out = normalize(x, self.mean, self.std)
        blurred = _rows(params.blur)
        if blurred:
            out = _on_rows(out, blurred, _blur, _select(params.sigma, blurred))
        return out, masks

    def flip(self, x: Tensor, params: AugmentParams) -> Tensor:
        """The samples that ``params.flip`` selects flipped left to right, the others unchanged:
        images ``(N, C, H, W)`` and masks ``(N, H, W)`` alike. The one flip of seglab's data path:
        the loader workers' ``TrainTransform`` flips each sample's image and mask through it too."""
        return _on_rows(x, _rows(params.flip), _flip)

    def table(self, gamma: Tensor) -> Tensor:
        """Gamma then normalisation of every uint8 level, per sample and channel: float64
        ``(n, C, 256)``, ``normalize(255 * (level / 255) ** gamma, mean, std)``."""
        levels = 255 * _UNIT ** gamma.view(-1, 1, 1, 1)  # (n, 1, 1, 256): channels at dim -3
        return normalize(levels, self._mean, self._std).flatten(-2)  # broadcast over channels

    def _gamma_normalise(self, x: Tensor, gamma: Tensor) -> Tensor:
        """Rounds float32 ``x`` in [0, 255] to uint8 levels and maps each level through its sample's
        and channel's ``table``."""
        levels = _scratch("levels", x.shape, torch.int32, x)
        levels.copy_(x.add_(0.5))  # in [0.5, 255.5]: truncation rounds to the nearest level
        table = self.table(gamma).to(x.device, torch.float32, non_blocking=True)  # (n, C, 256)
        out = torch.empty_like(x)
        n = x.shape[0] * x.shape[1]
        planes = (table.view(n, 256), levels.view(n, -1), out.view(n, -1))
        for lut, level, plane in zip(*(t.unbind(0) for t in planes), strict=True):
            torch.index_select(lut, 0, level, out=plane)
        return out


_UNIT = torch.arange(256, dtype=torch.float64) / 255
_IDENTITY = (1.0, 1.0, 1.0, 0.0)  # of brightness, contrast, saturation, hue


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, like: Tensor) -> Tensor:
    """Uninitialised memory for a temporary of the op ``name``: for one sample on the CPU (the
    loader workers' path), the same buffer from call to call (per thread). A fresh allocation of
    a few hundred KiB is a fresh mapping whose pages fault on first touch, and a worker's decode in
    between keeps the allocator from reusing freed memory: ~0.2 ms per 256x256 float32 image.
    Batches and other devices get a fresh tensor (the CUDA allocator caches its own)."""
    if like.device.type != "cpu" or like.shape[0] != 1:
        return torch.empty(shape, dtype=dtype, device=like.device)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = buffers[name] = torch.empty(shape, dtype=dtype)
    return buffer


def _rows(selected: Tensor) -> list[int]:
    """The samples a host-side bool tensor selects."""
    return [i for i, s in enumerate(selected.tolist()) if s]


def _select(values: Tensor, rows: list[int]) -> Tensor:
    return values if len(rows) == len(values) else values[rows]


def _on_rows(x: Tensor, rows: list[int], fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """``fn(x[rows], *args)`` for the samples ``rows``, the others unchanged: in place on the whole
    batch when all are selected (always so for a batch of one)."""
    if len(rows) == x.shape[0]:
        return fn(x, *args)
    if not rows:
        return x
    index = torch.tensor(rows, device=x.device)
    return x.index_copy(0, index, fn(x[index], *args))


def _flip(x: Tensor) -> Tensor:
    return x.flip(-1)


def _color_jitter_(x: Tensor, p: AugmentParams) -> Tensor:
    """ColorJitter's four ops in each sample's order, in place on float32 ``(N, C, H, W)`` in
    [0, 255]: at each of the four steps, the samples whose order names an op take it together,
    with their factors as a ``(k, 1, 1, 1)`` tensor, or as a number when there is one sample."""
    n, channels = x.shape[:2]
    factors = torch.stack([p.brightness, p.contrast, p.saturation, p.hue], dim=1)
    values, order = factors.tolist(), p.order.tolist()
    for step in range(4):
        groups: dict[int, list[int]] = {}
        for i in range(n):
            op = order[i][step]
            if values[i][op] != _IDENTITY[op] and (channels == 3 or op < SATURATION):
                groups.setdefault(op, []).append(i)
        for op, rows in groups.items():
            f: float | Tensor = values[rows[0]][op]
            if len(rows) > 1:
                f = factors[rows, op].to(x.device, torch.float32, non_blocking=True)
                f = f.view(-1, 1, 1, 1)
            clamp = op != HUE and any(values[i][op] > 1 for i in rows)
            x = _on_rows(x, rows, _JITTER[op], f, clamp)
    return x


def _brightness_(x: Tensor, f: float | Tensor, clamp: bool) -> Tensor:
    """Blend with black. A blend with factors <= 1 stays within [0, 255]: no clamp then."""
    x.mul_(f)
    return x.clamp_(max=255.0) if clamp else x


def _contrast_(x: Tensor, f: float | Tensor, clamp: bool) -> Tensor:
    """Blend with the image's mean grey level (the grey of the channel means)."""
    if x.shape[1] not in (1, 3):  # neither grey nor RGB: each band with its own mean
        x.mul_(f).add_(x.mean(dim=(2, 3), keepdim=True) * (1 - f))
        return x.clamp_(0.0, 255.0) if clamp else x
    means = x.mean(dim=(2, 3)).unbind(1)
    grey = means[0] if len(means) == 1 else _weighted(means, GRAY)
    x.mul_(f).add_(grey.view(-1, 1, 1, 1) * (1 - f))
    return x.clamp_(0.0, 255.0) if clamp else x


def _weighted(
    channels: tuple[Tensor, ...], weights: tuple[float, ...], out: Tensor | None = None
) -> Tensor:
    """``sum(w * c)``: torchvision's grey of r, g, b (numbers as weights: nothing to copy to the
    device)."""
    out = torch.mul(channels[0], weights[0], out=out)
    for channel, weight in zip(channels[1:], weights[1:], strict=True):
        out.add_(channel, alpha=weight)
    return out


def _saturation_(x: Tensor, f: float | Tensor, clamp: bool) -> Tensor:
    """Blend with the grey image."""
    grey = _scratch("grey", (x.shape[0], 1, *x.shape[2:]), x.dtype, x)
    x.lerp_(_weighted(x.split(1, dim=1), GRAY, out=grey), 1 - f)
    return x.clamp_(0.0, 255.0) if clamp else x


def _hue_(x: Tensor, shift: float | Tensor, clamp: bool = False) -> Tensor:
    """torchvision's ``adjust_hue`` (an HSV hue rotation by ``shift`` turns) in cheap float ops.

    Value ``v`` and chroma ``C = v - min`` are unchanged by a hue rotation: channel ``c`` becomes
    ``min + C * f(h - 2c)``, ``h`` the rotated hue in sectors (sixths of a turn), in [-4, 8) here,
    and ``f`` the 6-periodic trapezoid: 1 within 1 of a peak ``2c + 6k``, 0 within 1 of a valley
    ``2c + 3 + 6k``. Everything is kept multiplied by ``C`` (no division): ``H = h * C``. The sector
    of the max channel is selected by ``v != channel`` (0 exactly where the channel is the
    max; ties: r, then g, as torchvision): on CPU, ``max(dim)`` with indices, boolean masks and
    ``where`` each cost 3-20x an add. ``f(t) = clamp(2 - d, 0, 1)``, ``d`` the distance to the
    nearest peak; with ``P`` the peak ``2c + 6k`` in ``[shift - 4, shift + 2]`` (in sectors),
    ``u = h - P`` lies in [-3, 9] and ``d = |3 - |u - 3||`` there. The three channels take that
    together, as one op each on all three planes with a per-channel coefficient: a handful of op
    calls (each costs more than its arithmetic on a 256x256 crop once the decode has gone through
    the caches)."""
    r, g, b = x.split(1, dim=1)
    planes = _scratch("hue", (9, x.shape[0], 1, *x.shape[2:]), x.dtype, x)
    v, m, chroma, not_r, not_g, s2, g_max, b_max, hue = planes.unbind(0)
    torch.amax(x, 1, keepdim=True, out=v)
    torch.amin(x, 1, keepdim=True, out=m)
    torch.sub(v, m, out=chroma)
    torch.ne(v, r, out=not_r)  # as float32: half the cost of sub + sign
    torch.ne(v, g, out=not_g)
    # H: g - b (r max), b - r + 2C (g max), r - g + 4C (b max), in [-C, 5C)
    torch.mul(chroma, 2.0, out=s2).sub_(g)
    torch.add(s2, b, alpha=2.0, out=g_max).sub_(r)  # (b - r + 2C) - (g - b)
    torch.add(s2, r, alpha=2.0, out=b_max).sub_(b)  # (r - g + 4C) - (b - r + 2C)
    torch.sub(g, b, out=hue)
    hue.addcmul_(g_max.addcmul_(b_max, not_g), not_r)
    # (u - 3) * C = H + (6 * shift - P - 3) * C, per channel: written over x (r, g, b are spent)
    u = torch.addcmul(hue, chroma, _hue_offsets(shift, x), out=x)
    c3 = torch.mul(chroma, 3.0, out=s2)
    u.abs_()
    torch.sub(c3, u, out=u).abs_()  # d * C
    top = torch.add(m, chroma, alpha=2.0, out=g_max)  # m + 2C
    return torch.sub(top, u, out=x).clamp_(m, v)


def _hue_offsets(shift: float | Tensor, x: Tensor) -> Tensor:
    """``6 * shift - P - 3`` per sample and channel ``c``, ``P`` the peak ``2c + 6k`` (in sectors)
    in ``[6 * shift - 4, 6 * shift + 2]``: ``(1, 3, 1, 1)`` for one shift (a number),
    ``(k, 3, 1, 1)`` for shifts ``(k, 1, 1, 1)``."""
    if isinstance(shift, Tensor):
        sectors = shift * 6
        peaks = _CHANNEL_PEAKS.to(x.device, x.dtype)
        peaks = peaks + 6 * torch.ceil((sectors - 4 - peaks) / 6)
        return sectors - 3 - peaks
    sectors = 6 * shift
    offsets = [sectors - 3 - (c + 6 * math.ceil((sectors - 4 - c) / 6)) for c in (0, 2, 4)]
    return torch.tensor(offsets, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


_CHANNEL_PEAKS = torch.tensor([0.0, 2.0, 4.0]).view(1, 3, 1, 1)


_JITTER = (_brightness_, _contrast_, _saturation_, _hue_)


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """``v2.GaussianBlur(5)`` with one sigma per sample (reflect padding), as two separable passes
    of shifted multiply-adds: on CPU ~15x faster than a depthwise ``conv2d``."""
    t = torch.arange(BLUR_KERNEL, dtype=torch.float64) - BLUR_KERNEL // 2
    kernel = torch.softmax(-(t**2) / (2 * sigma[:, None] ** 2), dim=1)  # (n, k), as torchvision
    kernel = kernel.to(x.device, torch.float32, non_blocking=True)
    weights = [kernel[:, i].view(-1, 1, 1, 1) for i in range(BLUR_KERNEL)]
    pad, (h, w) = BLUR_KERNEL // 2, x.shape[-2:]
    xp = _reflect_pad(x, -1, _scratch("blur_columns", (*x.shape[:-1], w + 2 * pad), x.dtype, x))
    y = torch.mul(xp[..., :w], weights[0], out=_scratch("blur_y", x.shape, x.dtype, x))
    for i in range(1, BLUR_KERNEL):
        y.addcmul_(xp[..., i : i + w], weights[i])
    yp = _reflect_pad(y, -2, _scratch("blur_rows", (*x.shape[:-2], h + 2 * pad, w), x.dtype, x))
    out = yp[..., :h, :] * weights[0]
    for i in range(1, BLUR_KERNEL):
        out.addcmul_(yp[..., i : i + h, :], weights[i])
    return out


def _reflect_pad(x: Tensor, dim: int, out: Tensor) -> Tensor:
    """``F.pad(x, ..., mode="reflect")`` by ``BLUR_KERNEL // 2`` on both sides of ``dim`` (-1 or
    -2), written into ``out`` (its size there plus 4: ``BLUR_KERNEL`` is 5)."""
    n = x.shape[dim]
    parts = [x.narrow(dim, 2, 1), x.narrow(dim, 1, 1), x]
    parts += [x.narrow(dim, n - 2, 1), x.narrow(dim, n - 3, 1)]
    return torch.cat(parts, dim=dim, out=out)
