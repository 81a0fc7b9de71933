"""Decoding images and masks from disk by fixed rules, with errors that name the file and the
problem.

Images (``read_image``, the one function training, evaluation, ``seglab check-data``, ``predict``
and ``explain`` read images with) become 8-bit RGB ``uint8 (3, H, W)``:

* 8-bit RGB is used as stored; grey (and 1-bit) images get their value in all three channels;
  palette images get their palette's colours;
* an alpha channel is dropped: every pixel keeps its stored colour, transparent or not (not blended
  onto a background);
* CMYK and YCbCr images are converted to RGB by the plain formula, without colour management
  (``R = (255 - C) * (255 - K) / 255``...): colours are approximate;
* multi-band images (TIFF or GeoTIFF) keep every band as stored, in their own type
  (``read_multiband``): a TIFF with more than 8 bits per sample (16-bit, 32-bit integer, float),
  with bands that are neither grey, RGB, palette nor CMYK (e.g. RGB + near-infrared), that PIL
  cannot identify, or with GeoTIFF tags is read through rasterio (``seglab.data.rasters``; tifffile
  when rasterio is not installed). ``uint8`` bands stay ``uint8``; every other type becomes
  ``float32`` raw values (``seglab.data.normalize`` says how they are scaled). An alpha band is
  dropped and its transparent pixels, like nodata pixels, are *invalid*: ``read_image_valid``
  says which (training turns them into ``ignore_index``), their values are set to 0;
* other images with more than 8 bits per channel (16-bit PNG) are refused: save them as TIFF;
* an EXIF orientation other than 1 is refused, applied or ignored as ``exif_orientation`` says
  (``seglab.data.exif``).

Masks (``read_mask``, ``read_rgb_mask``) must be stored losslessly: PNG, BMP, GIF, TIFF without JPEG
compression, or lossless WebP. JPEG and lossy WebP change pixel values near every edge, which turns
class ids into neighbouring (still valid) ids; such files are refused whatever their extension says.
A mask with an EXIF orientation other than 1 is refused too: masks are label arrays, used as stored.
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_png

from seglab.data.exif import ORIENTATIONS, ExifOrientation, apply_orientation, exif_orientation
from seglab.data.rasters import data_bands, have_rasterio, image_tensor, open_raster, read_window
from seglab.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Formats torchvision decodes (faster than PIL); PIL reads the header of every file but plain PNGs
# and decodes the rest.
_TORCHVISION_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")
# PIL modes turned into RGB by a lossless or documented rule, and what the rule does.
CONVERSIONS = {
    "RGB": None,
    "1": "black and white, repeated in R, G and B",
    "L": "grey, repeated in R, G and B",
    "P": "palette indices replaced by their colours",
    "RGBA": "alpha channel dropped",
    "RGBX": None,
    "LA": "grey with alpha: alpha dropped, grey repeated in R, G and B",
    "PA": "palette with alpha: alpha dropped, indices replaced by their colours",
    "CMYK": "CMYK converted to RGB without colour management (colours approximate)",
    "YCbCr": "YCbCr converted to RGB",
}
# Mask formats that store pixel values exactly (WebP only in its lossless variant, TIFF unless
# JPEG-compressed).
LOSSLESS_MASK_FORMATS = ("PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
# PNG layouts (bit depth, colour type) that torchvision decodes to what PIL gives, read without
# opening PIL when no chunk before the pixels needs it (``_plain_png``). Images: every layout of at
# most 8 bits (PIL opens each in a mode of CONVERSIONS), decoded to RGB. Class-id masks: 8-bit grey,
# 8-bit palette (torchvision keeps the indices) and 16-bit grey, unchanged. Colour masks: 8-bit RGB
# and RGBA (alpha dropped). torchvision scales 1-, 2- and 4-bit pixels to 0-255 where PIL gives
# 1-bit masks as 0/1 and low-bit palettes as indices: such masks, and palette colour masks, stay
# with PIL.
_PNG_IMAGE_LAYOUTS = {(b, k) for b in (1, 2, 4, 8) for k in (0, 3)} | {(8, 2), (8, 4), (8, 6)}
_PNG_ID_LAYOUTS = {(8, 0), (8, 3), (16, 0)}
_PNG_RGB_LAYOUTS = {(8, 2), (8, 6)}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
# GeoTIFF tags (ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory): such files
# are read through rasterio, every band as stored.
_GEOTIFF_TAGS = (33550, 33922, 34264, 34735)


class SplitNotFound(DataError):
    """A split's directory or list file does not exist (``seglab check-data`` notes an optional
    split that is absent instead of reporting a problem)."""


def file_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be read as a ``what`` (image, mask) file, naming a broken link's target;
    ``None`` when it is a file."""
    if path.is_file():
        return None
    if path.is_symlink():
        target = Path(os.readlink(path))
        return f"{path}: broken symbolic link to {path.parent / target} (the target does not exist)"
    if path.is_dir():
        return f"{path}: is a directory, not a file"
    return f"{path}: {what} file not found"


def _read_file(path: Path, what: str) -> bytearray:
    try:
        with open(path, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)
            f.readinto(data)
            return data
    except PermissionError:
        raise DataError(f"{path}: cannot read the {what} file: permission denied") from None
    except OSError:
        raise DataError(
            file_problem(path, what) or f"{path}: cannot read the {what} file"
        ) from None


def _plain_png(
    data: bytes | bytearray, check_pixels: bool, metadata_ok: bool = False
) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` of a PNG file's bytes that torchvision can decode without PIL
    reading the header first; ``None`` (PIL reads the file) when it is not a PNG, when a chunk
    before the pixels is one PIL must read (``eXIf``: an orientation; ``acTL``: an animation) or is
    damaged (PIL refuses the file), when the pixel data (``IDAT``) is cut short, or, with
    ``check_pixels``, damaged: torchvision's decoder (0.29) crashes the process on damaged pixel
    data (a longjmp out of libpng) instead of raising. Checking a 360x480 mask's pixels costs
    ~7 us (zlib.crc32, ~4 GB/s), walking the chunks ~2 us; opening the file with PIL ~20 us.
    ``metadata_ok``: an orientation or animation chunk is no reason for ``None`` (PIL has read
    them already)."""
    if data[:16] != b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR":
        return None
    view, pos, end, pixels = memoryview(data), 8, len(data), False
    while pos + 12 <= end:
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind, stop = bytes(view[pos + 4 : pos + 8]), pos + 8 + length
        if pixels and kind != b"IDAT":  # the pixel data is complete; torchvision reads no further
            break
        if stop + 4 > end or (kind in (b"eXIf", b"acTL") and not metadata_ok):
            return None
        crc = int.from_bytes(view[stop : stop + 4], "big")
        if (kind != b"IDAT" or check_pixels) and zlib.crc32(view[pos + 4 : stop]) != crc:
            return None
        pixels = pixels or kind == b"IDAT"
        pos = stop + 4
    size = int.from_bytes(view[16:20], "big") * int.from_bytes(view[20:24], "big")
    limit = Image.MAX_IMAGE_PIXELS
    if not pixels or (limit is not None and size > limit):  # PIL warns about or refuses a bomb
        return None
    return data[24], data[25]


def deep_image_problem(path: Path | str, depth: str) -> str:
    """The refusal of a non-TIFF image with more than 8 bits per channel, with what to do."""
    return (
        f"{path}: image has {depth}; seglab reads such images from TIFF/GeoTIFF files only "
        "(every band in its own type). Save it as TIFF, or convert it to 8-bit RGB with the "
        "scaling your data needs (e.g. `magick in.png -auto-level -depth 8 out.png`)"
    )


def check_image_mode(path: Path | str, image: Image.Image) -> None:
    """Refuses an opened image that has more than 8 bits per channel, or whose PIL mode has no rule
    to become 8-bit RGB (see ``CONVERSIONS``)."""
    mode = image.mode
    bits = image.tag_v2.get(258, 8) if image.format == "TIFF" else 8  # TIFF BitsPerSample
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    if mode in ("I", "F"):
        kind = "32-bit float" if mode == "F" else "32-bit integer"
        raise DataError(deep_image_problem(path, f"{kind} pixels (PIL mode {mode})"))
    if mode.startswith("I;16") or bits > 8:  # PIL opens 16-bit RGB TIFFs as RGB, truncated
        depth = bits if bits > 8 else 16
        raise DataError(deep_image_problem(path, f"{depth} bits per channel (PIL mode {mode})"))
    if mode not in CONVERSIONS:
        raise DataError(
            f"{path}: image is in PIL mode {mode}, which seglab does not convert; save it as "
            "8-bit RGB"
        )


def orientation_problem(path: Path | str, orientation: int) -> str:
    """The refusal of an image whose EXIF orientation nobody said how to treat."""
    return (
        f"{path}: EXIF orientation {orientation}: viewers show it {ORIENTATIONS[orientation]}, "
        "decoders read the stored pixels. Set data.exif_orientation to apply (masks and "
        "predictions follow the displayed image) or ignore (they follow the stored pixels)"
    )


class _Multiband(Exception):
    """Raised inside ``read_image``'s PIL branch: the file is read by ``read_multiband``."""


def is_multiband_tiff(image: Image.Image) -> bool:
    """Whether an opened TIFF is read band by band in its own type (``read_multiband``) rather
    than converted to 8-bit RGB: more than 8 bits per sample, a PIL mode without an RGB rule
    (``CONVERSIONS``), extra samples that are not alpha, or GeoTIFF tags."""
    if image.format != "TIFF":
        return False
    tags = image.tag_v2
    bits = tags.get(258, 8)
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    extra = tags.get(338, ())
    extra = extra if isinstance(extra, tuple) else (extra,)
    return (
        bits > 8
        or image.mode not in CONVERSIONS
        or any(v not in (1, 2) for v in extra)
        or any(tag in tags for tag in _GEOTIFF_TAGS)
    )


def tiff_reading(path: str | Path) -> str | None:
    """How ``read_image`` reads a TIFF file, from its header: ``"multiband"`` (every band in its
    own type, ``read_multiband``) or the PIL mode it converts to 8-bit RGB (``"RGB"``, ``"L"``...);
    ``None`` when it is not a TIFF at all. Streamed prediction reads windows by the same rule;
    an image too large for PIL to open (``Image.MAX_IMAGE_PIXELS``, which ``read_image`` refuses)
    is read band by band as stored (``"multiband"``)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:
                if header.format != "TIFF":
                    return None
                return "multiband" if is_multiband_tiff(header) else header.mode
    except (UnidentifiedImageError, Image.DecompressionBombError):
        with open(path, "rb") as f:
            return "multiband" if f.read(4) in _TIFF_MAGIC else None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image header: {e}") from None


def read_multiband(path: str | Path) -> tuple[Tensor, Tensor | None]:
    """A TIFF/GeoTIFF (or, with rasterio, any GDAL raster) as ``(image (C, H, W), valid (H, W) bool
    or None when every pixel is valid)``: every band but alpha as stored, ``uint8`` or ``float32``
    raw values (``seglab.data.rasters.image_tensor``). rasterio when installed, else tifffile."""
    path = Path(path)
    if have_rasterio():
        with open_raster(path) as src:
            image, valid = read_window(src, None, data_bands(src))
    else:
        image, valid = _read_tifffile(path)
    return image_tensor(image, valid), None if valid.all() else torch.from_numpy(valid)


def _read_tifffile(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """tifffile's reading of a TIFF's first image: bands first, alpha samples dropped (their zeros
    invalid), GDAL's nodata tag (42113) and NaN invalid."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series, page = tif.series[0], tif.pages[0]
            array, axes = series.asarray(), series.axes
            extra = page.tags.get(338)
            nodata = page.tags.get(42113)
    except (tifffile.TiffFileError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image: {e}") from None
    if axes.endswith("S"):  # samples interleaved: (H, W, S)
        array = np.moveaxis(array, -1, 0)
    array = array.reshape(-1, *array.shape[-2:])
    return tiff_bands(
        array,
        extra.value if extra is not None else (),
        None if nodata is None else str(nodata.value),
    )


def tiff_bands(
    array: np.ndarray, extra_samples: tuple[int, ...] | int, nodata: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """A TIFF's pixels ``(samples, h, w)`` (a whole image or a window of it) as ``(data bands,
    valid (h, w))``: alpha samples (ExtraSamples ``extra_samples`` 1 or 2) dropped, their zeros
    invalid; GDAL's nodata tag value (``nodata``, tag 42113) and NaN invalid."""
    valid = np.ones(array.shape[-2:], bool)
    extra = extra_samples if isinstance(extra_samples, tuple) else (extra_samples,)
    alphas = [v in (1, 2) for v in extra]
    if any(alphas) and len(alphas) < array.shape[0]:
        keep = array.shape[0] - len(alphas)
        flags = [False] * keep + alphas
        valid &= (array[[i for i, f in enumerate(flags) if f]] > 0).all(0)
        array = array[[i for i, f in enumerate(flags) if not f]]
    if nodata is not None:
        value = float(nodata.strip("\x00 "))
        valid &= ~(array == np.array(value, array.dtype)).any(0)
    if array.dtype.kind == "f":
        valid &= ~np.isnan(array).any(0)
    return array, valid


def read_image(path: str | Path, exif: ExifOrientation = "refuse") -> Tensor:
    """An image ``(C, H, W)`` by the rules of this module's docstring: 8-bit RGB ``uint8 (3, H, W)``
    for photos; multi-band TIFF/GeoTIFF files with their own bands (``uint8`` or ``float32``, their
    invalid pixels 0). ``exif`` says what to do with an EXIF orientation other than 1."""
    return read_image_valid(path, exif)[0]


def read_image_valid(
    path: str | Path, exif: ExifOrientation = "refuse"
) -> tuple[Tensor, Tensor | None]:
    """``read_image`` and the pixels that hold data: ``valid (H, W)`` bool, ``None`` when all do
    (every 8-bit photo); False at a multi-band raster's nodata and transparent pixels."""
    path = Path(path)
    data = _read_file(path, "image")
    try:
        # Pixels checked too: torchvision's PNG decoder crashes the process on damaged ones; PIL
        # raises instead (but reads 16-bit RGB as 8-bit, which torchvision's uint16 tells).
        if _plain_png(data, check_pixels=True) in _PNG_IMAGE_LAYOUTS:  # nothing for PIL
            orientation = 1
            image = decode_png(torch.frombuffer(data, dtype=torch.uint8), ImageReadMode.RGB)
        else:
            with Image.open(io.BytesIO(data)) as header:
                if is_multiband_tiff(header):
                    raise _Multiband
                check_image_mode(path, header)
                orientation = exif_orientation(header)
                sound = header.format != "PNG" or _plain_png(data, True, metadata_ok=True)
                if header.format in _TORCHVISION_FORMATS and sound:
                    raw = torch.frombuffer(data, dtype=torch.uint8)
                    image = decode_image(raw, mode=ImageReadMode.RGB)
                else:
                    pixels = torch.from_numpy(np.array(header.convert("RGB")))
                    image = pixels.permute(2, 0, 1).contiguous()
    except DataError:
        raise
    except _Multiband:
        return read_multiband(path)
    except UnidentifiedImageError:
        if bytes(data[:4]) in _TIFF_MAGIC:  # a TIFF layout PIL does not know (e.g. 4-band uint16)
            return read_multiband(path)
        raise DataError(f"{path}: cannot decode image: not an image PIL can identify") from None
    except (RuntimeError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image (corrupt or truncated): {e}") from None
    if image.dtype != torch.uint8:  # torchvision decodes 16-bit PNGs that PIL calls RGB
        raise DataError(deep_image_problem(path, f"{image.element_size() * 8} bits per channel"))
    if orientation != 1 and exif != "ignore":
        if exif != "apply":
            raise DataError(orientation_problem(path, orientation))
        return apply_orientation(image, orientation), None
    return image, None


def webp_is_lossless(source: Path | bytes | bytearray) -> bool:
    """Whether a WebP file (a path, or its bytes) holds a lossless (VP8L) rather than a lossy (VP8)
    image. The RIFF container names its bitstream chunk; PIL does not say which it read."""
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    pos = 12
    while pos + 8 <= len(data):
        fourcc, size = bytes(data[pos : pos + 4]), int.from_bytes(data[pos + 4 : pos + 8], "little")
        if fourcc == b"VP8L":
            return True
        if fourcc in (b"VP8 ", b"ANMF"):  # lossy, or an animation
            return False
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes
    return False


def lossy_mask_problem(
    path: Path, image: Image.Image, data: bytes | bytearray | None = None
) -> str | None:
    """Why a mask file cannot hold exact class ids (a lossy format), or ``None``; ``data``: the
    file's bytes, if already read."""
    fmt = image.format
    if fmt == "WEBP":
        lossless = webp_is_lossless(path if data is None else data)
    elif fmt == "TIFF":
        lossless = "jpeg" not in str(image.info.get("compression", ""))
    else:
        lossless = fmt in LOSSLESS_MASK_FORMATS
    if lossless:
        return None
    kind = {"WEBP": "lossy WebP", "TIFF": "JPEG-compressed TIFF", "MPO": "JPEG"}.get(fmt, fmt)
    return (
        f"{path}: mask is stored as {kind}, a lossy format that changes class ids near edges; "
        "export the masks as PNG from the annotation tool (converting this file keeps the damage)"
    )


def _decode_mask(path: Path, rgb: bool = False) -> np.ndarray | Tensor:
    """The mask's pixels (as RGB colours with ``rgb``), checked to be stored losslessly and
    upright; errors name the file. The file is read once: plain PNGs of the common layouts
    (``_plain_png``) are decoded by torchvision (a tensor ``(H, W)``, or ``(H, W, 3)`` with
    ``rgb``), every other file by PIL (an array)."""
    data = _read_file(path, "mask")
    try:
        if _plain_png(data, check_pixels=True) in (_PNG_RGB_LAYOUTS if rgb else _PNG_ID_LAYOUTS):
            pixels = decode_png(torch.frombuffer(data, dtype=torch.uint8), ImageReadMode.UNCHANGED)
            return pixels[:3].permute(1, 2, 0).contiguous() if rgb else pixels[0]  # from (C, H, W)
        with Image.open(io.BytesIO(data)) as im:
            problem = lossy_mask_problem(path, im, data)
            if problem is None and (orientation := exif_orientation(im)) != 1:
                problem = (
                    f"{path}: mask has EXIF orientation {orientation} ({ORIENTATIONS[orientation]} "
                    "by viewers); masks are used as stored: remove the tag once the mask is aligned"
                )
            if problem is not None:
                raise DataError(problem)
            return np.array(im.convert("RGB") if rgb else im)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: cannot decode mask (corrupt, truncated or not an image): not an image PIL "
            "can identify"
        ) from None
    except (OSError, RuntimeError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(
            f"{path}: cannot decode mask (corrupt, truncated or not an image): {e}"
        ) from None


def read_mask(path: str | Path) -> Tensor:
    """A single-channel mask of class ids as an integer tensor ``(H, W)``: ``uint8`` for 8-bit
    masks, ``int64`` otherwise; palette PNGs give their indices. Multi-channel masks are refused:
    colour masks need a palette mapping."""
    path = Path(path)
    array = _decode_mask(path)
    if isinstance(array, Tensor):  # a PNG layout torchvision decoded: one channel, 8 or 16 bits
        return array if array.dtype == torch.uint8 else array.to(torch.int64)
    if array.ndim != 2:
        raise DataError(
            f"{path}: mask has {array.shape[-1]} channels; masks must be single-channel class ids "
            "(for colour masks give the data module a palette)"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype not in (np.uint8, np.int16, np.uint16, np.int32):
        raise DataError(f"{path}: mask has pixel type {array.dtype}; expected integer class ids")
    return torch.from_numpy(array.astype(np.int64) if array.dtype != np.uint8 else array)


def read_rgb_mask(path: str | Path) -> Tensor:
    """A colour-coded mask as a ``uint8`` tensor ``(H, W, 3)``; palette PNGs give their colours."""
    pixels = _decode_mask(Path(path), rgb=True)
    return pixels if isinstance(pixels, Tensor) else torch.from_numpy(pixels)


def colors_to_ids(
    rgb: Tensor,
    palette: list[tuple[int, int, int]],
    name: str,
    ignore_color: tuple[int, int, int] | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Class ids ``(H, W)`` of an ``(H, W, 3)`` colour mask: colour ``palette[i]`` is class ``i``,
    ``ignore_color`` is ``ignore_index``; any other colour is an error naming it."""
    codes = (rgb[..., 0].long() << 16) | (rgb[..., 1].long() << 8) | rgb[..., 2].long()
    colors = [*palette, *([ignore_color] if ignore_color is not None else [])]
    keys = torch.tensor([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=torch.long)
    values = torch.tensor(
        list(range(len(palette))) + ([ignore_index] if ignore_color is not None else []),
        dtype=torch.long,
    )
    order = torch.argsort(keys)
    keys, values = keys[order], values[order]
    pos = torch.searchsorted(keys, codes).clamp_(max=len(keys) - 1)
    known = keys[pos] == codes
    if not known.all():
        unknown = codes[~known].unique()[:5].tolist()
        shown = ", ".join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in unknown)
        raise DataError(
            f"{name}: mask has colours not in the palette: {shown} "
            "(give every colour a class in data.palette, or set data.ignore_color)"
        )
    return values[pos]


def display_rgb(image: Tensor) -> np.ndarray:
    """A picture ``(H, W, 3)`` ``uint8`` of an image ``(C, H, W)`` of any bands and type, for
    overlays (predict's ``--save_overlay``, explain, logged images): the first three bands (one
    band repeated); bands that are not ``uint8`` stretched linearly from their 2nd to their 98th
    percentile to 0-255."""
    x = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    if x.dtype == torch.uint8:
        return x.permute(1, 2, 0).contiguous().numpy()
    values = x.detach().cpu().to(torch.float32).numpy()
    low, high = np.percentile(values.reshape(3, -1), [2, 98], axis=1)
    scaled = (values - low[:, None, None]) / np.maximum(high - low, 1e-12)[:, None, None]
    return (scaled.clip(0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
