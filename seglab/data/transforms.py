"""Joint image/mask transforms on ``torchvision.transforms.v2``.

Images are ``tv_tensors.Image`` (uint8) and masks ``tv_tensors.Mask``: v2 moves both together through
every geometric transform, resizes masks with nearest-neighbour interpolation and leaves masks alone
in photometric transforms. Padding fills the image with 0 and the mask with ``ignore_index`` so padded
pixels count nowhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Augment:
    """Training augmentation settings (``data.init_args.augment.*`` in a config)."""

    scale_range: tuple[float, float] = (0.5, 2.0)
    max_class_ratio: float = 1.0
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.1


def _uniform(low: float, high: float) -> float:
    # torch's generator, like torchvision's own transforms: one seed covers every random draw.
    return low + (high - low) * float(torch.rand(()))


def _randint(high: int) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(high + 1, ()))


def _find(flat_inputs: list[Any], kind: type) -> Tensor | None:
    return next((x for x in flat_inputs if isinstance(x, kind)), None)


class RandomCropPad(v2.Transform):
    """Random crop to ``size``, padding first where the input is smaller.

    With ``max_class_ratio < 1`` the crop is re-drawn (up to 10 times) while one class covers more than
    that fraction of its labelled pixels, so crops do not show only sky or road (mmsegmentation's
    ``cat_max_ratio``)."""

    def __init__(
        self, size: tuple[int, int], ignore_index: int = 255, max_class_ratio: float = 1.0
    ) -> None:
        super().__init__()
        self.size = size
        self.ignore_index = ignore_index
        self.max_class_ratio = max_class_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = TF.get_size(_find(flat_inputs, tv_tensors.Image))
        ch, cw = self.size
        pad = [0, 0, max(0, cw - w), max(0, ch - h)]  # left, top, right, bottom
        ph, pw = h + pad[3], w + pad[2]
        mask = _find(flat_inputs, tv_tensors.Mask)
        tries = 10 if (self.max_class_ratio < 1.0 and mask is not None) else 1
        for _ in range(tries):
            top, left = _randint(ph - ch), _randint(pw - cw)
            if tries == 1:
                break
            crop = mask[..., top : min(top + ch, h), left : min(left + cw, w)].reshape(-1)
            counts = torch.bincount(crop[crop != self.ignore_index].long())
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() < self.max_class_ratio * counts.sum():
                break
        return {"pad": pad, "top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return inpt
        if any(params["pad"]):
            fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
            inpt = TF.pad(inpt, params["pad"], fill=fill)
        return TF.crop(inpt, params["top"], params["left"], *self.size)


def _is_rgb8(x: Tensor) -> bool:
    return x.dtype == torch.uint8 and x.ndim == 3 and x.shape[0] == 3 and x.device.type == "cpu"


def _resize_rgb8(image: Tensor, height: int, width: int) -> Tensor:
    """``TF.resize(image, [height, width], antialias=True)`` of a uint8 (3, H, W) CPU image through
    torch's channels-last uint8 kernel (vectorised for interleaved RGB): 3-8x faster than the planar
    path even counting the two layout changes, which go channel by channel (a plain
    ``permute().contiguous()`` of uint8 is a slow generic strided copy). Same values exactly."""
    interleaved = torch.empty(image.shape[1], image.shape[2], 3, dtype=torch.uint8)
    for c in range(3):
        interleaved[..., c].copy_(image[c])
    out = TF.resize(interleaved.permute(2, 0, 1), [height, width], antialias=True)
    planar = torch.empty(3, height, width, dtype=torch.uint8)
    for c in range(3):
        planar[c].copy_(out[c])
    return planar


class RandomScaleCrop(v2.Transform):
    """A resize by one factor drawn uniformly from ``scale_range`` (aspect ratio kept), then
    ``RandomCropPad``, in one step that resizes only the source region the crop keeps: the same
    scale and crop distribution (placement rounded to whole source pixels), at a
    fraction of the cost when the scaled image is much larger than the crop (2x a 1024x2048 image is
    8.4 M pixels for a 0.5 M pixel crop). Image and mask are resized from the same region to the same
    size, so they stay aligned exactly."""

    def __init__(
        self,
        scale_range: tuple[float, float],
        size: tuple[int, int],
        ignore_index: int = 255,
        max_class_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale_range = scale_range
        self.size = size
        self.ignore_index = ignore_index
        self.max_class_ratio = max_class_ratio

    @staticmethod
    def _span(start: int, stop: int, src: int, scaled: int) -> tuple[int, int, int, int]:
        """Source rows ``[a, b)`` covering scaled rows ``[start, stop)``, the size they scale to and
        the offset of ``start`` in it."""
        a = start * src // scaled
        b = min(src, -(-stop * src // scaled))
        size = max(stop - start, round((b - a) * scaled / src))
        offset = min(round(start - a * scaled / src), size - (stop - start))
        return a, b, size, max(0, offset)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = TF.get_size(_find(flat_inputs, tv_tensors.Image))
        s = _uniform(*self.scale_range)
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        ch, cw = self.size
        pad_h, pad_w = max(0, ch - sh), max(0, cw - sw)
        mask = _find(flat_inputs, tv_tensors.Mask)
        tries = 10 if (self.max_class_ratio < 1.0 and mask is not None) else 1
        for _ in range(tries):
            top, left = _randint(sh + pad_h - ch), _randint(sw + pad_w - cw)
            rows = self._span(top, min(top + ch, sh), h, sh)
            cols = self._span(left, min(left + cw, sw), w, sw)
            if tries == 1:
                break
            crop = mask[..., rows[0] : rows[1], cols[0] : cols[1]].reshape(-1)
            counts = torch.bincount(crop[crop != self.ignore_index].long())
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() < self.max_class_ratio * counts.sum():
                break
        return {"rows": rows, "cols": cols, "visible": (min(ch, sh - top), min(cw, sw - left))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return inpt
        (y0, y1, rh, oy), (x0, x1, rw, ox) = params["rows"], params["cols"]
        vh, vw = params["visible"]
        out = TF.crop(inpt, y0, x0, y1 - y0, x1 - x0)
        if (rh, rw) != (y1 - y0, x1 - x0):
            if isinstance(inpt, tv_tensors.Image) and _is_rgb8(out):
                out = tv_tensors.wrap(_resize_rgb8(out.as_subclass(Tensor), rh, rw), like=inpt)
            else:
                out = TF.resize(out, [rh, rw], antialias=True)
        out = TF.crop(out, oy, ox, vh, vw)
        ch, cw = self.size
        if (vh, vw) != (ch, cw):
            fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
            out = TF.pad(out, [0, 0, cw - vw, ch - vh], fill=fill)
        return out


_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
BLUR_KERNEL = 5
BLUR_SIGMA = (0.1, 1.5)


def _hue_shift(x: Tensor, hue_factor: float) -> Tensor:
    """torchvision's ``adjust_hue`` of a float (3, H, W) image in any value scale, in place, in cheap float ops.

    Value ``v`` and chroma ``C = v - min`` are unchanged by a hue rotation: channel ``c`` becomes
    ``min + C * f(h - 2c)``, ``h`` the hue in sectors and ``f`` the 6-periodic trapezoid (1 within
    1 of 0, 0 within 1 of 3). Everything is kept multiplied by ``C`` (no division): ``H = h * C``.
    On CPU, ``max(dim)`` with indices, boolean masks, ``where`` and ``remainder`` each cost 3-20x an
    add, so the sector of the max channel is selected by ``sign(v - channel)`` (0 exactly where the
    channel is the max; ties: r, then g, as torchvision). ``h`` spans [-1, 5) + shift, where one
    trapezoid (``clamp(2 - |h - P|, 0, 1)`` or ``clamp(|h - P| - 1, 0, 1)``) is exact for a channel
    whose peak or valley ``P`` lies in [1, 3] + shift; the channel left over (none when the shift
    is a whole number of sectors) takes the circular distance ``||k| - 3| - 3|``."""
    r, g, b = x
    v, m = x.amax(0), x.amin(0)
    chroma = v - m
    not_r = torch.sub(v, r).sign_()
    not_g = torch.sub(v, g).sign_()
    shift = 6.0 * hue_factor
    # H: g - b (r max), b - r + 2C (g max), r - g + 4C (b max); then shifted
    s2 = torch.mul(chroma, 2.0).sub_(g)
    g_max = torch.add(s2, b, alpha=2.0).sub_(r)  # (b - r + 2C) - (g - b)
    b_max = torch.add(s2, r, alpha=2.0).sub_(b)  # (r - g + 4C) - (b - r + 2C)
    hue = torch.add(g, chroma, alpha=shift).sub_(b)
    hue.addcmul_(g_max.addcmul_(b_max, not_g), not_r)
    low, high = m, v
    for c in range(3):
        out = x[c]  # r, g, b are no longer needed
        peak = 2 * c + 3 * math.ceil(
            (1.0 + shift - 2 * c) / 3.0
        )  # first P >= 1 + shift, = 2c mod 3
        if peak <= 3.0 + shift and (peak - 2 * c) % 6 == 0:  # a peak: v around it
            torch.sub(hue, chroma, alpha=peak, out=out).abs_().neg_().add_(chroma, alpha=2.0)
        elif peak <= 3.0 + shift:  # a valley: min around it
            torch.sub(hue, chroma, alpha=peak, out=out).abs_().sub_(chroma)
        else:  # circular distance to the peak at 2c, |h - 2c| < 9
            torch.sub(hue, chroma, alpha=2 * c, out=out).abs_().sub_(chroma, alpha=3.0).abs_()
            out.sub_(chroma, alpha=3.0).abs_().neg_().add_(chroma, alpha=2.0)
        out.add_(m).clamp_(low, high)
    return x


def _blur(x: Tensor, sigma: float) -> Tensor:
    """``gaussian_blur(x, [5, 5], [sigma, sigma])`` (reflect padding) of a float (C, H, W) image as
    two separable passes of shifted multiply-adds: ~15x faster than the depthwise ``conv2d`` on CPU."""
    t = torch.arange(BLUR_KERNEL, dtype=torch.float64) - BLUR_KERNEL // 2
    kernel = torch.softmax(-(t**2) / (2 * sigma**2), dim=0).tolist()
    pad, (h, w) = BLUR_KERNEL // 2, x.shape[-2:]
    xp = torch.nn.functional.pad(x[None], (pad, pad, 0, 0), mode="reflect")[0]
    y = xp[..., :w] * kernel[0]
    for i in range(1, BLUR_KERNEL):
        y.add_(xp[..., i : i + w], alpha=kernel[i])
    yp = torch.nn.functional.pad(y[None], (0, 0, pad, pad), mode="reflect")[0]
    out = yp[..., :h, :] * kernel[0]
    for i in range(1, BLUR_KERNEL):
        out.add_(yp[..., i : i + h, :], alpha=kernel[i])
    return out


class FusedAugment(v2.Transform):
    """Horizontal flip, colour jitter, gamma, Gaussian blur and normalisation in one transform.

    The same random draws as ``RandomHorizontalFlip`` + ``ColorJitter`` (its factor ranges and its
    random order of the four ops, drawn by ``v2.ColorJitter.make_params`` itself) + a gamma drawn uniformly from ``gamma`` +
    ``RandomApply([GaussianBlur(5, (0.1, 1.5))], p=blur_prob)`` + ``ToDtype`` + ``Normalize``, each
    sample independently, but one dispatch instead of seven and no uint8 round trips: the jitter
    runs in float32 (cheap in-place ops), is rounded to uint8 levels once, and gamma and
    normalisation are one 256-entry table per channel. torchvision's uint8 path truncates to integers
    after every jitter op and after gamma (up to ~2.5/255 darker); this path rounds once, so it
    is the more exact one: it equals torchvision's float ops (and ``BatchAugment``) to within half
    a level times gamma's slope (tested at 1.5/255). The blur runs last on the normalised image: it
    commutes with a per-channel affine map (weights sum to 1, reflect padding).

    With ``mean=None`` the output is float32 in [0, 1] (``photometric``: normalised later). Masks are
    flipped with the image and otherwise untouched; other inputs pass through."""

    def __init__(
        self,
        augment: Augment,
        mean: tuple[float, ...] | None = IMAGENET_MEAN,
        std: tuple[float, ...] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        a = augment
        self.hflip = a.hflip
        self.jitter = v2.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue)
        self.gamma = tuple(a.gamma)
        self.blur_prob = a.blur_prob
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std) if mean is not None else None
        if self.mean is not None and (self.std is None or len(self.mean) != len(self.std)):
            raise ValueError(f"mean and std must be as long: {mean}, {std}")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {
            "flip": self.hflip and bool(torch.rand(1) < 0.5),
            **self.jitter.make_params(flat_inputs),
            "gamma": _uniform(*self.gamma) if self.gamma != (1.0, 1.0) else None,
            "sigma": (
                _uniform(*BLUR_SIGMA)
                if self.blur_prob > 0 and bool(torch.rand(1) < self.blur_prob)
                else None
            ),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return TF.horizontal_flip(inpt) if params["flip"] else inpt
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        image = inpt.as_subclass(Tensor)
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"FusedAugment expects a uint8 (3, H, W) or (1, H, W) image, got {image.dtype} "
                f"{tuple(image.shape)}"
            )
        if params["flip"]:
            image = image.flip(-1)
        return tv_tensors.wrap(self.apply(image.float(), params), like=inpt)

    def apply(self, x: Tensor, params: dict[str, Any]) -> Tensor:
        """The photometric ops and normalisation of a float32 (C, H, W) image at uint8 levels
        (already flipped; overwritten): what ``transform`` and ``TrainTransform``'s fast path share."""
        levels = self._jitter_float(x, params)  # int32 (C, H, W) in 0..255
        table = self._table(params["gamma"], x.shape[0], x.device)
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        for lut, c, o in zip(table, levels, out, strict=True):  # straight into the output
            torch.index_select(lut, 0, c.view(-1), out=o.view(-1))
        if params["sigma"] is not None:
            out = _blur(out, params["sigma"])
        return out

    def _table(self, gamma: float | None, channels: int, device: torch.device) -> Tensor:
        """(C, 256) float32: uint8 level -> (level / 255) ** gamma, normalised."""
        x = torch.arange(256, dtype=torch.float64) / 255
        x = x.pow(gamma) if gamma is not None else x
        if self.mean is None:
            return x.float().expand(channels, 256).to(device)
        if len(self.mean) != channels:
            raise ValueError(
                f"mean {self.mean} has {len(self.mean)} values, image {channels} channels"
            )
        mean = torch.tensor(self.mean, dtype=torch.float64)[:, None]
        std = torch.tensor(self.std, dtype=torch.float64)[:, None]
        return ((x - mean) / std).float().to(device)

    @staticmethod
    def _jitter_float(x: Tensor, params: dict[str, Any]) -> Tensor:
        """ColorJitter's four ops in their drawn order on float32 in [0, 255] (in place); int32
        levels out."""
        ops = [
            (int(i), params[key])
            for i in params["fn_idx"].tolist()
            for key in [("brightness", "contrast", "saturation", "hue")[i] + "_factor"]
            if params[key] is not None
        ]
        rgb = x.shape[0] == 3
        # A blend with factor f <= 1 is a convex combination of values in [0, 255]: no clamp.
        # ``lerp_`` blends in one pass (x + (1 - f) * (grey - x)).
        for op, f in ops:
            if op == 0:  # brightness: blend with black
                x.mul_(f)
                if f > 1:
                    x.clamp_(max=255.0)
            elif op == 1:  # contrast: blend with the mean grey level
                means = (x.view(x.shape[0], -1).sum(1) / x[0].numel()).tolist()
                grey = sum(w * m for w, m in zip(_GRAY, means, strict=True)) if rgb else means[0]
                x.lerp_(torch.tensor(grey, device=x.device), 1.0 - f)
                if f > 1:
                    x.clamp_(0.0, 255.0)
            elif op == 2 and rgb:  # saturation: blend with the grey image
                grey = (
                    torch.mul(x[0], _GRAY[0]).add_(x[1], alpha=_GRAY[1]).add_(x[2], alpha=_GRAY[2])
                )
                x.lerp_(grey.expand_as(x), 1.0 - f)
                if f > 1:
                    x.clamp_(0.0, 255.0)
            elif op == 3 and rgb and f != 0:
                x = _hue_shift(x, f)
        return x.add_(0.5).int()  # in [0.5, 255.5]: truncation rounds to the nearest level


def _nearest_index(start: int, stop: int, size: int, first: int, count: int) -> np.ndarray:
    """Source indices of outputs ``first .. first + count`` when ``[start, stop)`` is resized to
    ``size`` with nearest neighbour: torch's rule (``floor(i * (float)in / out)``, in float32),
    so a gather reproduces ``TF.resize(mask, interpolation=NEAREST)`` exactly."""
    n = stop - start
    i = np.arange(first, first + count)
    if size != n:
        scale = np.float32(n) / np.float32(size)
        i = np.minimum(np.floor(i.astype(np.float32) * scale).astype(np.int64), n - 1)
    return i + start


class TrainTransform(v2.Compose):
    """``v2.Compose([RandomScaleCrop | RandomCropPad, FusedAugment])`` with a fast path for the
    dataset's call, exactly one uint8 RGB ``Image`` and one 2-D ``Mask`` on the CPU: the same
    random draws in the same order, none of v2's per-call machinery (pytree flattening, wrapping,
    dispatch: hundreds of Python calls per sample), the mask resized, cropped, padded and
    flipped by one gather (no nearest-neighbour resize of the region), and the image resized in torch's
    channels-last uint8 kernel (decoded images are interleaved already) and converted to float32
    planes in the same copy that crops it. Any other call runs the composed transforms."""

    def __init__(self, geometric: RandomScaleCrop | RandomCropPad, fused: FusedAugment) -> None:
        super().__init__([geometric, fused])

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) == 2 and self._fast(*inputs):
            return self._call_fast(*inputs)
        return super().forward(*inputs)

    @staticmethod
    def _fast(image: Any, mask: Any) -> bool:
        return (
            type(image) is tv_tensors.Image
            and type(mask) is tv_tensors.Mask
            and _is_rgb8(image)
            and mask.ndim == 2
            and mask.device.type == "cpu"
            and not mask.dtype.is_floating_point
        )

    def _call_fast(
        self, image: tv_tensors.Image, mask: tv_tensors.Mask
    ) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        geometric, fused = self.transforms
        params = geometric.make_params([image, mask])
        photo = fused.make_params([image, mask])
        image, mask = image.as_subclass(Tensor), mask.as_subclass(Tensor)
        if isinstance(geometric, RandomScaleCrop):
            (y0, y1, rh, oy), (x0, x1, rw, ox) = params["rows"], params["cols"]
            vh, vw = params["visible"]
        else:  # RandomCropPad: padding only right/bottom, so a crop of the unpadded image
            h, w = image.shape[-2:]
            y0, x0 = params["top"], params["left"]
            y1, x1 = min(y0 + geometric.size[0], h), min(x0 + geometric.size[1], w)
            (rh, rw), (oy, ox), (vh, vw) = (y1 - y0, x1 - x0), (0, 0), (y1 - y0, x1 - x0)
        ch, cw = geometric.size
        flip = photo["flip"]

        region = image[:, y0:y1, x0:x1]
        if (rh, rw) != (y1 - y0, x1 - x0):
            # (1, 3, h, w) channels-last with an unambiguous batch stride: the output stays
            # channels-last (torchvision's resize_image does the same re-striding).
            hwc = region.permute(1, 2, 0).contiguous()
            nchw = hwc.permute(2, 0, 1).unsqueeze(0)
            nchw = nchw.as_strided(nchw.shape, (nchw.numel(), *nchw.stride()[1:]))
            region = F.interpolate(
                nchw, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True
            )[0]
        region = region[:, oy : oy + vh, ox : ox + vw]
        padded = (vh, vw) != (ch, cw)
        x = (torch.zeros if padded else torch.empty)(3, ch, cw, dtype=torch.float32)
        x[:, :vh, :vw].copy_(region)  # uint8 -> float32, interleaved -> planar
        if flip:
            x = x.flip(-1)
        out = fused.apply(x, photo)

        rows = _nearest_index(y0, y1, rh, oy, vh)
        cols = _nearest_index(x0, x1, rw, ox, vw)
        if flip:
            cols = cols[::-1]
        kept = mask.numpy().take(rows, 0).take(cols, 1)
        if padded:
            full = np.full((ch, cw), geometric.ignore_index, dtype=kept.dtype)
            if flip:
                full[:vh, cw - vw :] = kept
            else:
                full[:vh, :vw] = kept
            kept = full
        return tv_tensors.Image(out), tv_tensors.Mask(torch.from_numpy(kept))


def normalize(
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> list[v2.Transform]:
    """uint8 image to float32 in [0, 1], then per-channel standardisation (masks untouched)."""
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean, std),
    ]


def train_transform(
    crop_size: tuple[int, int],
    augment: Augment,
    ignore_index: int = 255,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> TrainTransform:
    """Random scale, crop (padded, class-ratio re-try), then flip, photometric jitter and
    normalisation fused in one ``FusedAugment``; ``TrainTransform`` runs both without v2's
    per-call overhead when called with an image and a mask."""
    geometric = geometric_transform(crop_size, augment, ignore_index).transforms[0]
    return TrainTransform(geometric, FusedAugment(augment, mean, std))


def geometric_transform(
    crop_size: tuple[int, int], augment: Augment, ignore_index: int = 255
) -> v2.Compose:
    """Random scale and crop only, uint8 out: the loader's share when flips, photometric jitter and
    normalisation run on the device (``seglab.data.device_transforms.BatchAugment``). The same
    geometric steps as ``train_transform``."""
    if tuple(augment.scale_range) != (1.0, 1.0):
        step: v2.Transform = RandomScaleCrop(
            augment.scale_range, crop_size, ignore_index, augment.max_class_ratio
        )
    else:
        step = RandomCropPad(crop_size, ignore_index, augment.max_class_ratio)
    return v2.Compose([step])


def photometric(augment: Augment) -> list[v2.Transform]:
    """Colour jitter, gamma and blur (``train_transform``'s, without flip and normalisation): image
    only, masks pass through; uint8 in, float32 in [0, 1] out (``normalize`` accepts either)."""
    return [FusedAugment(replace(augment, hflip=False), mean=None, std=None)]


def eval_transform(
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> v2.Compose:
    """Evaluation sees the whole image at its own size: normalisation only."""
    return v2.Compose(normalize(mean, std))
