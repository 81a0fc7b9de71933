"""Training augmentation on a whole batch, after it reached the device.

Decoding and photometric jitter of large images usually bound segmentation training by the CPU. With
``data.init_args.augment_on_device: true`` the loader workers only decode, scale and crop (uint8
batches: a quarter of the float32 bytes to copy), and :class:`BatchAugment` applies the horizontal
flip, colour jitter, gamma, Gaussian blur and normalisation to the batch on the accelerator.

The semantics are those of the CPU path (``seglab.data.transforms.train_transform``): same ranges and
probabilities, each sample with its own random parameters, the colour jitter ops in a random order per
sample (as ``v2.ColorJitter`` draws one order per call), masks flipped with their images and otherwise
untouched. Given the same parameters every op equals torchvision's on a float32 image (to ~1e-6); the
CPU path (``FusedAugment``) runs the same float32 ops but rounds the jittered image to uint8 levels
once before gamma and normalisation, so the output distributions match up to that rounding.

Random parameters are drawn on the host with torch's default CPU generator (or a given
``torch.Generator``): deterministic under ``seed_everything``, and no host-device synchronisation —
the few per-sample choices that select work (which samples blur, which take hue at which step) are
known on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from seglab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augment

# ColorJitter's op ids, as in torchvision: the order of application is a permutation of these.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
BLUR_KERNEL = 5
BLUR_SIGMA = (0.1, 1.5)
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclass
class BatchParams:
    """Per-sample random parameters of one batch, on the host. Disabled ops hold identity values."""

    flip: Tensor  # (N,) bool
    order: Tensor  # (N, 4) long: colour jitter op ids in the order they are applied
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
        augment: the settings shared with the CPU path (``scale_range`` and ``max_class_ratio`` are
            the loader's business and ignored here).
        mean, std: per-channel normalisation of images scaled to [0, 1].

    Call it on ``images`` uint8 ``(N, 3, H, W)`` (or float in [0, 1]) and ``masks`` ``(N, H, W)``
    (or ``None``) on any device; returns float32 normalised images and the masks, flipped alike.
    """

    def __init__(
        self,
        augment: Augment | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.augment = a = augment or Augment()
        for name in ("brightness", "contrast", "saturation"):
            if getattr(a, name) < 0:
                raise ValueError(f"data.augment.{name} must be >= 0, got {getattr(a, name)}")
        if not 0 <= a.hue <= 0.5:
            raise ValueError(f"data.augment.hue must be in [0, 0.5], got {a.hue}")
        if not 0 < a.gamma[0] <= a.gamma[1]:
            raise ValueError(f"data.augment.gamma must be 0 < low <= high, got {list(a.gamma)}")
        if not 0 <= a.blur_prob <= 1:
            raise ValueError(f"data.augment.blur_prob must be in [0, 1], got {a.blur_prob}")
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"data.mean and data.std must be as long, std > 0: {mean}, {std}")
        self.mean, self.std = tuple(mean), tuple(std)

    def sample(self, n: int, generator: torch.Generator | None = None) -> BatchParams:
        """Draws ``n`` samples' parameters from the CPU path's distributions."""
        a = self.augment

        def uniform(low: float, high: float, enabled: bool = True, identity: float = 1.0) -> Tensor:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            return (low + (high - low) * u).float() if enabled else torch.full((n,), identity)

        # ColorJitter's factor ranges: [max(0, 1 - x), 1 + x] and [-hue, hue]; 0 disables an op.
        def jitter(x: float) -> Tensor:
            return uniform(max(0.0, 1.0 - x), 1.0 + x, enabled=x > 0)

        return BatchParams(
            flip=torch.rand(n, generator=generator) < (0.5 if a.hflip else 0.0),
            order=torch.rand(n, 4, generator=generator).argsort(dim=1),  # uniform permutations
            brightness=jitter(a.brightness),
            contrast=jitter(a.contrast),
            saturation=jitter(a.saturation),
            hue=uniform(-a.hue, a.hue, enabled=a.hue > 0, identity=0.0),
            gamma=uniform(*a.gamma, enabled=tuple(a.gamma) != (1.0, 1.0)),
            blur=torch.rand(n, generator=generator) < a.blur_prob,
            sigma=uniform(*BLUR_SIGMA),
        )

    def __call__(
        self, images: Tensor, masks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        return self.apply(images, masks, self.sample(images.shape[0], generator))

    def apply(
        self, images: Tensor, masks: Tensor | None, params: BatchParams
    ) -> tuple[Tensor, Tensor | None]:
        """The augmentation with given parameters (from :meth:`sample`)."""
        if images.ndim != 4 or images.shape[1] != len(self.mean):
            raise ValueError(
                f"BatchAugment expects images (N, {len(self.mean)}, H, W), got {tuple(images.shape)}"
            )
        if masks is not None and masks.shape != images.shape[:1] + images.shape[2:]:
            raise ValueError(
                f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}"
            )
        n, device = images.shape[0], images.device
        if params.flip.any():
            flip = params.flip.to(device, non_blocking=True)
            images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
            if masks is not None:
                masks = torch.where(flip.view(n, 1, 1), masks.flip(-1), masks)
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        x = self._color_jitter(x, params)
        if (params.gamma != 1).any():
            x = x.pow(params.gamma.to(device, non_blocking=True).view(n, 1, 1, 1))
        if params.blur.any():
            idx = params.blur.nonzero()[:, 0]
            x = x.index_copy(0, idx.to(device), _blur(x[idx.to(device)], params.sigma[idx]))
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return (x - mean) / std, masks

    def _color_jitter(self, x: Tensor, p: BatchParams) -> Tensor:
        """Four steps; at each, every sample takes the op its permutation names. Brightness, contrast
        and saturation are all ``blend(x, base, factor)`` (base 0, the grey mean, the grey image),
        so one vectorised blend serves every sample; hue runs on the samples whose turn it is."""
        n, device = x.shape[0], x.device
        factors = torch.stack([p.brightness, p.contrast, p.saturation], dim=1)
        for step in range(4):
            op = p.order[:, step]
            blend = op != HUE
            f = torch.where(blend, factors.gather(1, op.clamp(max=2)[:, None])[:, 0], 1.0)
            if (f != 1).any():
                fd = f.to(device, non_blocking=True).view(n, 1, 1, 1)
                base = torch.zeros(())
                if ((f != 1) & (op != BRIGHTNESS)).any():
                    gray = _grayscale(x)
                    sat = (op == SATURATION).to(device, x.dtype, non_blocking=True).view(n, 1, 1, 1)
                    con = (op == CONTRAST).to(device, x.dtype, non_blocking=True).view(n, 1, 1, 1)
                    base = gray * sat + gray.mean(dim=(1, 2, 3), keepdim=True) * con
                x = (x * fd + base.to(device) * (1 - fd)).clamp_(0, 1)
            idx = ((op == HUE) & (p.hue != 0)).nonzero()[:, 0]
            if len(idx):
                shifted = _shift_hue(x[idx.to(device)], p.hue[idx].to(device, non_blocking=True))
                x = x.index_copy(0, idx.to(device), shifted)
        return x


def _grayscale(x: Tensor) -> Tensor:
    r, g, b = x.unbind(dim=1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotates the HSV hue of ``x`` (N, 3, H, W) in [0, 1] by ``shift`` (N,) turns."""
    r, g, b = x.unbind(dim=1)
    v, minc = x.amax(dim=1), x.amin(dim=1)
    delta = v - minc
    safe = torch.where(delta > 0, delta, 1.0)
    hue = torch.where(
        v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = torch.remainder(hue / 6 + shift.view(-1, 1, 1), 1.0)
    sat = torch.where(v > 0, delta / torch.where(v > 0, v, 1.0), 0.0)
    # HSV to RGB without branches: channel c = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * hue.unsqueeze(1), 6.0)
    return v.unsqueeze(1) - (v * sat).unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """``v2.GaussianBlur(5)`` with one sigma per sample: separable, reflect-padded, depthwise."""
    n, c, h, w = x.shape
    t = torch.arange(BLUR_KERNEL, dtype=torch.float32) - BLUR_KERNEL // 2
    kernel = torch.softmax(-(t**2) / (2 * sigma.float().view(-1, 1) ** 2), dim=1)  # (n, k)
    kernel = kernel.to(x.device, non_blocking=True).repeat_interleave(c, dim=0)  # (n c, k)
    pad = BLUR_KERNEL // 2
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, BLUR_KERNEL), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, BLUR_KERNEL, 1), groups=n * c)
    return y.view(n, c, h, w)
