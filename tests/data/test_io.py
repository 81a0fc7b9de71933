"""Every image becomes 8-bit RGB by one documented rule or is refused with how to convert it; masks
must be stored losslessly, whatever their file name says."""

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from seglab.data.io import DataError, read_image, read_mask, read_rgb_mask, webp_is_lossless
from tests.data.awkward_files import broken_link, save_jpeg, save_png16, shapes_mask

RGB = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def as_hwc(image: torch.Tensor) -> np.ndarray:
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    return image.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_8bit_rgb_is_used_as_stored(tmp_path, ext):
    path = tmp_path / f"a{ext}"
    Image.fromarray(RGB).save(path, **({"lossless": True} if ext == ".webp" else {}))
    assert np.array_equal(as_hwc(read_image(path)), RGB)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_grey_images_repeat_their_value_in_r_g_and_b(tmp_path, ext):
    path = tmp_path / f"grey{ext}"
    Image.fromarray(RGB[..., 0]).save(path)
    image = as_hwc(read_image(path))
    expected = np.array(Image.open(path))
    assert (image == expected[..., None]).all()


def test_palette_images_get_their_palette_colours(tmp_path):
    palette = Image.fromarray(RGB).quantize(16)
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "p.bmp")
    expected = np.array(palette.convert("RGB"))
    assert np.array_equal(as_hwc(read_image(tmp_path / "p.png")), expected)
    assert np.array_equal(as_hwc(read_image(tmp_path / "p.bmp")), expected)


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp"])
def test_alpha_is_dropped_keeping_the_stored_colours(tmp_path, ext):
    rgba = np.dstack([RGB, np.where(RGB[..., 0] > 128, 255, 0).astype(np.uint8)])
    path = tmp_path / f"alpha{ext}"
    Image.fromarray(rgba).save(
        path, **({"lossless": True, "exact": True} if ext == ".webp" else {})
    )
    assert np.array_equal(as_hwc(read_image(path)), RGB)  # not blended onto any background


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
def test_cmyk_is_converted_without_colour_management(tmp_path, ext):
    rng = np.random.default_rng(1)
    cmyk = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    path = tmp_path / f"cmyk{ext}"
    Image.fromarray(cmyk, mode="CMYK").save(path, **({"quality": 100} if ext == ".jpg" else {}))
    stored = np.array(Image.open(path)).astype(np.float64)  # C, M, Y, K as decoded
    expected = (255 - stored[..., :3]) * (255 - stored[..., 3:]) / 255  # R = (255-C)(255-K)/255
    assert np.abs(as_hwc(read_image(path)).astype(np.float64) - expected).max() <= 1


def test_16bit_pngs_are_refused_with_how_to_convert_them_and_deep_tiffs_read_as_stored(tmp_path):
    grey16 = RGB[..., 0].astype(np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    Image.fromarray(grey16).save(tmp_path / "grey16.tif")
    save_png16(RGB.astype(np.uint16) * 257, tmp_path / "rgb16.png")
    for name in ("grey16.png", "rgb16.png"):
        with pytest.raises(DataError, match=rf"{name}: image has 16 bits per channel.*TIFF"):
            read_image(tmp_path / name)
    # TIFFs of deeper types keep their one band, as float32 raw values (seglab.data.io)
    image = read_image(tmp_path / "grey16.tif")
    assert image.dtype == torch.float32 and image.shape == (1, *grey16.shape)
    assert torch.equal(image[0], torch.from_numpy(grey16.astype(np.float32)))
    floats = RGB[..., 0].astype(np.float32) / 7
    Image.fromarray(floats).save(tmp_path / "float.tif")
    assert torch.equal(read_image(tmp_path / "float.tif")[0], torch.from_numpy(floats))


def test_unreadable_files_say_why(tmp_path):
    target = broken_link(tmp_path / "link.png")
    with pytest.raises(DataError, match=rf"link\.png: broken symbolic link to {target}"):
        read_image(tmp_path / "link.png")
    with pytest.raises(DataError, match=r"nowhere\.png: image file not found"):
        read_image(tmp_path / "nowhere.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"text\.png: cannot decode image"):
        read_image(tmp_path / "text.png")


MASK = shapes_mask(40, 48, [0, 1, 2])


@pytest.mark.parametrize(
    ("name", "save", "kind"),
    [
        ("m.jpg", lambda p: save_jpeg(MASK, p, quality=75), "JPEG"),
        ("m.png", lambda p: save_jpeg(MASK, p, quality=100), "JPEG"),  # the extension lies
        ("m.webp", lambda p: Image.fromarray(MASK).save(p, quality=90), "lossy WebP"),
        ("m.tif", lambda p: Image.fromarray(MASK).save(p, compression="jpeg"), "JPEG-compressed"),
    ],
)
def test_masks_in_lossy_formats_are_refused_naming_file_and_reason(tmp_path, name, save, kind):
    save(tmp_path / name)
    for read in (read_mask, read_rgb_mask):
        with pytest.raises(DataError, match=rf"{name}: mask is stored as {kind}.*lossy.*PNG"):
            read(tmp_path / name)


@pytest.mark.parametrize("name", ["m.png", "m.tif", "m.bmp"])
def test_masks_in_lossless_formats_keep_every_class_id(tmp_path, name):
    Image.fromarray(MASK).save(tmp_path / name)
    assert np.array_equal(read_mask(tmp_path / name).numpy(), MASK)


def test_lossless_webp_colour_masks_keep_every_colour(tmp_path):
    colours = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10]], np.uint8)[MASK]
    Image.fromarray(colours).save(tmp_path / "m.webp", lossless=True)
    assert np.array_equal(read_rgb_mask(tmp_path / "m.webp").numpy(), colours)


def test_webp_lossless_is_told_from_the_file_not_the_name(tmp_path):
    Image.fromarray(MASK).save(tmp_path / "a.webp", lossless=True)
    Image.fromarray(np.dstack([MASK] * 3 + [MASK * 0 + 255])).save(tmp_path / "b.webp", quality=80)
    Image.fromarray(MASK).save(tmp_path / "c.png")
    assert webp_is_lossless(tmp_path / "a.webp")
    assert not webp_is_lossless(tmp_path / "b.webp")  # extended format with alpha, lossy colour
    assert not webp_is_lossless(tmp_path / "c.png")


def test_a_mask_with_an_exif_orientation_is_refused_masks_are_used_as_stored(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(MASK).save(tmp_path / "m.png", exif=exif)
    with pytest.raises(DataError, match=r"m\.png: mask has EXIF orientation 6 .*used as stored"):
        read_mask(tmp_path / "m.png")
