"""Joint image/mask transforms on ``torchvision.transforms.v2``: the training geometry (random scale
and crop, one implementation), the loader's training transform and the evaluation transform.

They run on what a dataset's ``read`` gives (``seglab.data.datasets.base.TransformedDataset`` calls
them): the data path is read and check (the dataset) -> decoded cache (a wrapper, optional) -> scale
and crop -> flip and photometric augmentation (here per sample, or on the device per batch) ->
normalisation (``seglab.data.normalize``) -> batch.

Images are ``tv_tensors.Image`` (uint8) and masks ``tv_tensors.Mask``: both are cut from the same
source region and resized to the same size (masks with nearest neighbour), so they stay aligned
exactly. Padding fills the image with 0 and the mask with ``ignore_index`` so padded pixels count
nowhere. Flips, colour jitter, gamma, blur and normalisation are ``seglab.data.augment``'s, the
evaluation's normalisation ``seglab.data.normalize``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from seglab.data.augment import Augment, AugmentParams, BatchAugment
from seglab.data.normalize import IMAGENET_MEAN, IMAGENET_STD, check_normalization, normalize
from seglab.data.stats import label_counts

RETRIES = 10  # crop draws for ``max_class_ratio`` and rare-class centring


def _find(flat_inputs: list[Any], kind: type) -> Tensor | None:
    found = next((x for x in flat_inputs if isinstance(x, kind)), None)
    return None if found is None else found.as_subclass(Tensor)


def _randint(high: int) -> int:
    """Uniform integer in [0, high], from torch's generator."""
    return int(torch.randint(high + 1, ()))


def _span(start: int, stop: int, src: int, scaled: int) -> tuple[int, int, int, int]:
    """Source rows ``[a, b)`` covering scaled rows ``[start, stop)``, the size they scale to and the
    offset of ``start`` in it (placement rounded to whole source pixels)."""
    a = start * src // scaled
    b = min(src, -(-stop * src // scaled))
    size = max(stop - start, round((b - a) * scaled / src))
    offset = min(round(start - a * scaled / src), size - (stop - start))
    return a, b, size, max(0, offset)


class RandomScaleCrop(v2.Transform):
    """A resize by one factor drawn uniformly from ``scale_range`` (aspect ratio kept), then a crop
    of ``size`` at a uniformly random position, padded where the scaled image is smaller. Only the
    source region the crop keeps is resized: the same result at a fraction of the cost when the
    scaled image is much larger than the crop. ``scale_range=(1, 1)``: a plain random crop.

    Args:
        max_class_ratio: below 1, the crop is drawn again (up to 10 times) while one class covers
            more than this share of its labelled pixels, so crops do not show only sky or road.
        class_weights: rare-class crops (``seglab.data.sampling``): the crop is centred, as far as
            the image allows, on a random pixel of a class drawn among those present in the mask
            with probabilities proportional to these weights. ``None``: uniform crops.
    """

    def __init__(
        self,
        scale_range: tuple[float, float],
        size: tuple[int, int],
        ignore_index: int = 255,
        max_class_ratio: float = 1.0,
        class_weights: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.scale_range = tuple(scale_range)
        self.size = tuple(size)
        self.ignore_index = ignore_index
        self.max_class_ratio = max_class_ratio
        self.class_weights = class_weights

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _find(flat_inputs, tv_tensors.Image).shape[-2:]
        mask = _find(flat_inputs, tv_tensors.Mask)
        low, high = self.scale_range
        s = low + (high - low) * float(torch.rand(()))
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        ch, cw = self.size
        focus = self._focus(mask) if self.class_weights is not None and mask is not None else None
        retry = mask is not None and self.max_class_ratio < 1
        for _ in range(RETRIES if retry else 1):
            if focus is None:
                u, v = torch.rand(2, dtype=torch.float64).tolist()
                top, left = int(u * (max(sh, ch) - ch + 1)), int(v * (max(sw, cw) - cw + 1))
            else:  # centred on a random pixel of the focus class, kept inside the scaled image
                y, x = focus[_randint(len(focus) - 1)].tolist()
                top = min(max(0, round((y + 0.5) * sh / h - ch / 2)), max(sh, ch) - ch)
                left = min(max(0, round((x + 0.5) * sw / w - cw / 2)), max(sw, cw) - cw)
            rows = _span(top, min(top + ch, sh), h, sh)
            cols = _span(left, min(left + cw, sw), w, sw)
            if not retry or self._accept(mask[..., rows[0] : rows[1], cols[0] : cols[1]]):
                break
        return {"rows": rows, "cols": cols, "visible": (min(ch, sh - top), min(cw, sw - left))}

    def _focus(self, mask: Tensor) -> Tensor | None:
        """``(y, x)`` of every pixel of one class drawn among those present in ``mask`` with
        probabilities proportional to ``class_weights``; ``None`` for a mask without labels."""
        counts = label_counts(mask, self.ignore_index, len(self.class_weights))
        weights = self.class_weights * (counts[: len(self.class_weights)] > 0)
        if not bool(weights.any()):
            return None
        c = int(torch.multinomial(weights, 1))
        return (mask == c).nonzero()

    def _accept(self, region: Tensor) -> bool:
        """Whether no class covers more than ``max_class_ratio`` of the crop's labelled pixels."""
        counts = label_counts(region, self.ignore_index)
        counts = counts[counts > 0]
        return len(counts) > 1 and bool(counts.max() < self.max_class_ratio * counts.sum())

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return inpt
        (y0, y1, rh, oy), (x0, x1, rw, ox) = params["rows"], params["cols"]
        vh, vw = params["visible"]
        ch, cw = self.size
        x = inpt.as_subclass(Tensor)
        if isinstance(inpt, tv_tensors.Mask):
            out = _resize_mask_crop(x, (y0, y1, rh, oy, vh), (x0, x1, rw, ox, vw))
            if (vh, vw) != (ch, cw):
                out = _pad_keeping_layout(out, ch, cw, fill=self.ignore_index)
        else:
            out = x[..., y0:y1, x0:x1]
            if (rh, rw) != (y1 - y0, x1 - x0):
                out = _resize_image(out, rh, rw)
            out = out[..., oy : oy + vh, ox : ox + vw]
            if (vh, vw) != (ch, cw):
                out = _pad_keeping_layout(out, ch, cw, fill=0)
        return out.as_subclass(type(inpt))


def _resize_image(image: Tensor, height: int, width: int) -> Tensor:
    """``TF.resize_image(image, [height, width], antialias=True)``, exactly. A uint8 RGB image on
    the CPU goes through torch's channels-last (interleaved) uint8 kernel as one contiguous
    interleaved block, 2-3x faster than the planar kernel even counting that copy (decoded images
    are interleaved; a planar one is copied channel by channel: a strided uint8 copy is slower)."""
    if image.dtype != torch.uint8 or image.shape[0] != 3 or image.device.type != "cpu":
        return TF.resize_image(image, [height, width], antialias=True)
    if image.stride(0) == 1:
        hwc = image.permute(1, 2, 0).contiguous()
    else:
        hwc = torch.empty(*image.shape[1:], 3, dtype=torch.uint8)
        for c in range(3):
            hwc[..., c].copy_(image[c])
    # (1, 3, h, w) with an unambiguous channels-last batch stride, so that the output is
    # channels-last too (torchvision's resize_image re-strides the same way)
    nchw = hwc.permute(2, 0, 1).unsqueeze(0)
    nchw = nchw.as_strided(nchw.shape, (nchw.numel(), *nchw.stride()[1:]))
    out = F.interpolate(nchw, (height, width), mode="bilinear", align_corners=False, antialias=True)
    return out[0]


def _pad_keeping_layout(x: Tensor, height: int, width: int, fill: int) -> Tensor:
    """``x`` padded at the bottom and right to ``height x width`` with ``fill``, in ``x``'s memory
    layout: ``TF.pad`` returns an interleaved image planar, through a slow strided uint8 copy."""
    if x.ndim == 3 and x.stride(0) == 1:  # (C, H, W) over interleaved (H, W, C) memory
        out = x.new_full((height, width, x.shape[0]), fill).permute(2, 0, 1)
    else:
        out = x.new_full((*x.shape[:-2], height, width), fill)
    out[..., : x.shape[-2], : x.shape[-1]].copy_(x)
    return out


def _nearest(start: int, stop: int, size: int, first: int, count: int) -> np.ndarray:
    """Source indices of outputs ``first .. first + count`` when ``[start, stop)`` is resized to
    ``size`` by nearest neighbour with torch's rule (``floor(i * (float)in / out)``, in float32)."""
    i = np.arange(first, first + count)
    n = stop - start
    if size != n:
        i = np.floor(i.astype(np.float32) * (np.float32(n) / np.float32(size))).astype(np.int64)
    return np.minimum(i, n - 1) + start


def _resize_mask_crop(mask: Tensor, rows: tuple[int, ...], cols: tuple[int, ...]) -> Tensor:
    """The crop of ``TF.resize_mask(mask[y0:y1, x0:x1], [rh, rw])`` at ``(oy, ox)`` of size
    ``(vh, vw)``, as one gather of the kept source pixels (~2.5x faster than resizing the
    region)."""
    (y0, y1, rh, oy, vh), (x0, x1, rw, ox, vw) = rows, cols
    kept = (
        mask.numpy().take(_nearest(y0, y1, rh, oy, vh), -2).take(_nearest(x0, x1, rw, ox, vw), -1)
    )
    return torch.from_numpy(kept)


class TrainTransform(v2.Transform):
    """The loader's training transform: ``RandomScaleCrop``, then, unless ``augment`` is ``None``
    (``data.augment_on_device``: it runs on the batch), ``BatchAugment`` on the sample as a batch of
    one: the image flipped, jittered and normalised, its mask flipped alike by the same
    ``BatchAugment.flip``. One v2 pass."""

    def __init__(self, crop: RandomScaleCrop, augment: BatchAugment | None) -> None:
        super().__init__()
        self.crop = crop
        self.augment = augment

    def forward(self, *inputs: Any) -> Any:
        if (
            len(inputs) == 2
            and type(inputs[0]) is tv_tensors.Image
            and type(inputs[1]) is tv_tensors.Mask
        ):
            # the dataset's call, as v2 would run it, without its generic input handling (~100
            # Python calls: a tenth of the transform's time on a 256 px crop)
            params = self.make_params(list(inputs))
            return self.transform(inputs[0], params), self.transform(inputs[1], params)
        return super().forward(*inputs)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params = self.crop.make_params(flat_inputs)
        params["augment"] = None if self.augment is None else self.augment.sample(1)
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = self.crop.transform(inpt, params)
        p: AugmentParams | None = params["augment"]
        if p is not None and isinstance(out, tv_tensors.Image):
            x = out.as_subclass(Tensor)[None]
            if x.dtype == torch.uint8:
                image, _ = self.augment.apply(x, None, p)
            else:  # float32 raw values of bands of other types
                image, _ = self.augment.apply_raw(x, None, p)
            return image[0].as_subclass(tv_tensors.Image)
        if p is not None and isinstance(out, tv_tensors.Mask):
            mask = self.augment.flip(out.as_subclass(Tensor)[None], p)
            return mask[0].as_subclass(tv_tensors.Mask)
        return out


def train_transform(
    crop_size: tuple[int, int],
    augment: Augment,
    ignore_index: int = 255,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    on_device: bool = False,
    class_weights: Tensor | None = None,
) -> TrainTransform:
    """Random scale and crop (centred on rare classes with ``class_weights``, see
    ``RandomScaleCrop``), then (unless ``on_device``, where the data module runs it on the batch)
    flip, photometric jitter and normalisation."""
    crop = RandomScaleCrop(
        augment.scale_range, crop_size, ignore_index, augment.max_class_ratio, class_weights
    )
    return TrainTransform(crop, None if on_device else BatchAugment(augment, mean, std))


class EvalTransform:
    """Evaluation, test and predict see the whole image at its own size: ``normalize`` only (float32
    out), the mask untouched. Called as ``(image, mask)`` or on an image alone."""

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        check_normalization(mean, std)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: Tensor, mask: Tensor | None = None) -> Any:
        out = normalize(image.as_subclass(Tensor), self.mean, self.std)
        return out if mask is None else (out, mask)


def eval_transform(
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> EvalTransform:
    """Evaluation sees the whole image at its own size: normalisation only."""
    return EvalTransform(mean, std)
