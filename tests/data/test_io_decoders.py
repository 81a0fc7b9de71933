"""Plain PNGs are decoded by torchvision without opening PIL; every file, whichever decoder reads
it, gives the pixels PIL gives (palette indices, not colours; 16-bit ids as int64) or is refused as
before: lossy formats, EXIF orientations on masks, multi-channel masks, corrupt files, by name."""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from seglab.data.io import DataError, read_image, read_mask, read_rgb_mask

RNG = np.random.default_rng(0)
IDS = RNG.integers(0, 20, (37, 53), dtype=np.uint8)  # odd sizes: partial Adam7 blocks
IDS[:3] = 255  # an ignore_index border
IDS16 = (IDS.astype(np.uint32) * 3001 % 65536).astype(np.uint16)  # values above 32767 too
RGB = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
ALPHA = np.where(IDS > 9, 255, 0).astype(np.uint8)
PALETTE = [v for i in range(256) for v in (i, (7 * i) % 256, 255 - i)]
ADAM7 = [
    (0, 0, 8, 8),
    (0, 4, 8, 8),
    (4, 0, 8, 4),
    (0, 2, 4, 4),
    (2, 0, 4, 2),
    (0, 1, 2, 2),
    (1, 0, 2, 1),
]


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def write_png(
    path: Path,
    array: np.ndarray,
    colour_type: int,
    interlace: bool = False,
    before: bytes = b"",
    after: bytes = b"",
) -> Path:
    """An 8- or 16-bit PNG written by hand (PIL writes neither interlaced PNGs nor most layouts):
    ``before``/``after``: raw chunks placed before/after the pixel data (a palette, ``tRNS``,
    ``eXIf``, a chunk with a wrong checksum...)."""
    depth = 16 if array.dtype == np.uint16 else 8
    pixels = array.astype(">u2") if depth == 16 else array
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    rows = b"".join(
        b"\0" + row.tobytes() for y0, x0, dy, dx in passes for row in pixels[y0::dy, x0::dx]
    )
    h, w = array.shape[:2]
    header = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, int(interlace))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + before
        + chunk(b"IDAT", zlib.compress(rows))
        + after
        + chunk(b"IEND", b"")
    )
    return path


def exif_chunk(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return chunk(b"eXIf", exif.tobytes())


def palette_image(array: np.ndarray) -> Image.Image:
    image = Image.frombytes("P", array.shape[::-1], array.tobytes())
    image.putpalette(PALETTE)
    return image


def pil_mask(path: Path) -> torch.Tensor:
    """The class ids PIL reads, by read_mask's type rules (what read_mask returned before
    torchvision decoded masks): uint8 stays, 1-bit becomes 0/1, wider types int64."""
    array = np.array(Image.open(path))
    assert array.ndim == 2, "a multi-channel mask"
    array = array.astype(np.uint8) if array.dtype == bool else array
    return torch.from_numpy(array if array.dtype == np.uint8 else array.astype(np.int64))


PLTE = chunk(b"PLTE", bytes(PALETTE))
# Masks of class ids in every layout and format a user may give, each written by PIL or by hand.
ID_MASKS = {
    "grey.png": lambda p: Image.fromarray(IDS).save(p),
    "grey-interlaced.png": lambda p: write_png(p, IDS, 0, interlace=True),
    "grey-trns.png": lambda p: Image.fromarray(IDS).save(p, transparency=3),
    "grey-text.png": lambda p: write_png(p, IDS, 0, before=chunk(b"tEXt", b"a\0b")),
    "grey-exif-upright.png": lambda p: write_png(p, IDS, 0, before=exif_chunk(1)),
    "grey-exif-after-pixels.png": lambda p: write_png(p, IDS, 0, after=exif_chunk(6)),
    "grey-4bit.png": lambda p: Image.fromarray(IDS % 16).save(p, bits=4),
    "grey-2bit.png": lambda p: Image.fromarray(IDS % 4).save(p, bits=2),
    "bilevel.png": lambda p: Image.fromarray(IDS > 9).save(p),
    "palette.png": lambda p: palette_image(IDS).save(p),
    "palette-interlaced.png": lambda p: write_png(p, IDS, 3, interlace=True, before=PLTE),
    "palette-trns.png": lambda p: palette_image(IDS).save(p, transparency=bytes(range(0, 60, 3))),
    "palette-short.png": lambda p: palette_image(IDS).save(p, optimize=True),
    "palette-4bit.png": lambda p: palette_image(IDS % 16).save(p, bits=4),
    "palette-1bit.png": lambda p: palette_image(IDS % 2).save(p, bits=1),
    "grey16.png": lambda p: Image.fromarray(IDS16).save(p),
    "grey16-interlaced.png": lambda p: write_png(p, IDS16, 0, interlace=True),
    "grey16-trns.png": lambda p: write_png(p, IDS16, 0, before=chunk(b"tRNS", b"\x0b\xb9")),
    "grey.bmp": lambda p: Image.fromarray(IDS).save(p),
    "palette.bmp": lambda p: palette_image(IDS).save(p),
    "grey.tif": lambda p: Image.fromarray(IDS).save(p),
    "grey-lzw.tif": lambda p: Image.fromarray(IDS).save(p, compression="tiff_lzw"),
    "grey16.tif": lambda p: Image.fromarray(IDS16).save(p),
    "bilevel.tif": lambda p: Image.fromarray(IDS > 9).save(p),
    "palette.gif": lambda p: palette_image(IDS).save(p),
}
MULTI_CHANNEL = {
    "grey-alpha.png": lambda p: Image.fromarray(np.dstack([IDS, ALPHA]), "LA").save(p),
    "rgb.png": lambda p: Image.fromarray(RGB).save(p),
    "rgba.png": lambda p: Image.fromarray(np.dstack([RGB, ALPHA])).save(p),
    "rgb-interlaced.png": lambda p: write_png(p, RGB, 2, interlace=True),
    "grey-alpha16.png": lambda p: write_png(p, np.dstack([IDS16, IDS16]), 4),
    "rgb.webp": lambda p: Image.fromarray(RGB).save(p, lossless=True),
    "rgb.tif": lambda p: Image.fromarray(RGB).save(p),
    "rgb.bmp": lambda p: Image.fromarray(RGB).save(p),
}


@pytest.mark.parametrize("name", ID_MASKS)
def test_class_id_masks_give_exactly_the_ids_pil_reads(tmp_path, name):
    path = tmp_path / name
    ID_MASKS[name](path)
    got, expected = read_mask(path), pil_mask(path)
    assert got.dtype == expected.dtype and got.shape == expected.shape == IDS.shape
    assert torch.equal(got, expected)
    assert got.is_contiguous()


def test_palette_masks_give_indices_not_colours_and_16_bit_masks_int64(tmp_path):
    ID_MASKS["palette.png"](tmp_path / "p.png")
    ID_MASKS["grey16.png"](tmp_path / "g.png")
    assert np.array_equal(read_mask(tmp_path / "p.png").numpy(), IDS)
    assert read_mask(tmp_path / "g.png").dtype == torch.int64
    assert np.array_equal(read_mask(tmp_path / "g.png").numpy(), IDS16)


@pytest.mark.parametrize("name", MULTI_CHANNEL)
def test_multi_channel_masks_are_refused_naming_the_file(tmp_path, name):
    MULTI_CHANNEL[name](tmp_path / name)
    channels = np.array(Image.open(tmp_path / name)).shape[-1]
    with pytest.raises(DataError, match=rf"{name}: mask has {channels} channels.*palette"):
        read_mask(tmp_path / name)


@pytest.mark.parametrize("name", [*ID_MASKS, *MULTI_CHANNEL])
def test_colour_masks_give_the_colours_pil_gives(tmp_path, name):
    path = tmp_path / name
    {**ID_MASKS, **MULTI_CHANNEL}[name](path)
    got = read_rgb_mask(path)
    expected = np.array(Image.open(path).convert("RGB"))
    assert got.dtype == torch.uint8 and got.is_contiguous()
    assert np.array_equal(got.numpy(), expected)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("grey", lambda p: write_png(p, IDS, 0)),
        ("grey-interlaced", lambda p: write_png(p, IDS, 0, interlace=True)),
        ("palette-trns", lambda p: palette_image(IDS).save(p, transparency=5)),
        ("palette-2bit", lambda p: palette_image(IDS % 4).save(p, bits=2)),
        ("bilevel", lambda p: Image.fromarray(IDS > 9).save(p)),
        ("grey-4bit", lambda p: Image.fromarray(IDS % 16).save(p, bits=4)),
        ("grey-alpha", lambda p: Image.fromarray(np.dstack([IDS, ALPHA]), "LA").save(p)),
        ("rgb-interlaced", lambda p: write_png(p, RGB, 2, interlace=True)),
        ("rgba", lambda p: Image.fromarray(np.dstack([RGB, ALPHA])).save(p)),
    ],
)
def test_png_images_give_the_rgb_pil_gives(tmp_path, name, write):
    path = write(tmp_path / f"{name}.png") or tmp_path / f"{name}.png"
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, *IDS.shape)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), np.array(Image.open(path).convert("RGB")))


def test_a_png_whose_exif_says_turn_is_refused_as_image_and_as_mask(tmp_path):
    write_png(tmp_path / "m.png", IDS, 0, before=exif_chunk(6))
    with pytest.raises(DataError, match=r"m\.png: mask has EXIF orientation 6"):
        read_mask(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"m\.png: mask has EXIF orientation 6"):
        read_rgb_mask(tmp_path / "m.png")
    write_png(tmp_path / "i.png", RGB, 2, before=exif_chunk(3))
    with pytest.raises(DataError, match=r"i\.png: EXIF orientation 3: .*exif_orientation"):
        read_image(tmp_path / "i.png")
    assert np.array_equal(read_image(tmp_path / "i.png", "ignore").permute(1, 2, 0).numpy(), RGB)


def test_16_bit_pngs_are_refused_as_images_even_interlaced(tmp_path):
    write_png(tmp_path / "g.png", IDS16, 0, interlace=True)
    write_png(tmp_path / "rgb.png", RGB.astype(np.uint16) * 257, 2)
    for name in ("g.png", "rgb.png"):
        with pytest.raises(DataError, match=rf"{name}: image has 16 bits per channel"):
            read_image(tmp_path / name)


def test_an_animated_png_gives_its_first_frame_as_pil_does(tmp_path):
    frames = [Image.fromarray(IDS), Image.fromarray(IDS[::-1].copy())]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])
    assert np.array_equal(read_mask(tmp_path / "a.png").numpy(), IDS)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("what", ["image", "mask"])
def test_corrupt_pngs_are_refused_naming_the_file(tmp_path, what):
    read = read_image if what == "image" else read_mask
    data = png_bytes(RGB if what == "image" else IDS)
    idat = data.index(b"IDAT")
    broken = {
        "truncated.png": data[: len(data) // 2],
        "no-pixels.png": data[:idat],
        "bad-header-crc.png": data[:29] + b"\0\0\0\0" + data[33:],
        "empty.png": b"",
        # torchvision's decoder would crash the process on these: they are left to PIL
        "bad-pixels.png": data[: idat + 20] + bytes(40) + data[idat + 60 :],
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=rf"{name}: cannot decode {what}"):
            read(tmp_path / name)


def test_a_wrong_checksum_before_the_pixels_is_left_to_pil(tmp_path):
    # PIL refuses a chunk whose checksum fails; the direct path must not accept what PIL refused.
    write_png(tmp_path / "m.png", IDS, 0, before=chunk(b"tEXt", b"a\0b", crc=1))
    with pytest.raises(DataError, match=r"m\.png: cannot decode mask \(corrupt"):
        read_mask(tmp_path / "m.png")


def test_unreadable_mask_files_say_why(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.png: mask file not found"):
        read_mask(tmp_path / "nowhere.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match=r"dir\.png: is a directory"):
        read_mask(tmp_path / "dir.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"text\.png: cannot decode mask \(corrupt, truncated or"):
        read_mask(tmp_path / "text.png")


def test_unreadable_permissions_are_named(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(IDS).save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything
            pytest.skip("running with permission to read unreadable files")
        with pytest.raises(DataError, match=r"m\.png: cannot read the mask file: permission"):
            read_mask(path)
    finally:
        path.chmod(0o644)


def test_images_bigger_than_pils_bomb_limit_are_left_to_pil(tmp_path, monkeypatch):
    Image.fromarray(RGB).save(tmp_path / "i.png")
    Image.fromarray(IDS).save(tmp_path / "m.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match=r"i\.png: cannot decode image.*exceeds limit"):
        read_image(tmp_path / "i.png")
    with pytest.raises(DataError, match=r"m\.png: cannot decode mask.*exceeds limit"):
        read_mask(tmp_path / "m.png")


def test_plain_pngs_are_decoded_without_opening_pil(tmp_path, monkeypatch):
    # The common layouts skip PIL (~20 us a file): the direct path is what reads them.
    paths = {name: tmp_path / name for name in ("grey.png", "palette.png", "grey16.png")}
    for name, path in paths.items():
        ID_MASKS[name](path)
    Image.fromarray(RGB).save(tmp_path / "rgb.png")
    write_png(tmp_path / "rgba.png", np.dstack([RGB, ALPHA]), 6, interlace=True)
    ID_MASKS["bilevel.png"](tmp_path / "bilevel.png")

    def no_pil(*args, **kwargs):
        raise AssertionError("PIL opened a plain PNG")

    monkeypatch.setattr(Image, "open", no_pil)
    assert np.array_equal(read_mask(paths["grey.png"]).numpy(), IDS)
    assert np.array_equal(read_mask(paths["palette.png"]).numpy(), IDS)  # indices
    assert np.array_equal(read_mask(paths["grey16.png"]).numpy(), IDS16)
    assert np.array_equal(read_rgb_mask(tmp_path / "rgb.png").numpy(), RGB)
    assert np.array_equal(read_rgb_mask(tmp_path / "rgba.png").numpy(), RGB)
    assert np.array_equal(read_image(tmp_path / "rgb.png").permute(1, 2, 0).numpy(), RGB)
    with pytest.raises(AssertionError, match="PIL opened"):  # a 1-bit mask is PIL's to read
        read_mask(tmp_path / "bilevel.png")
