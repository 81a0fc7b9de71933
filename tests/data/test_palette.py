"""One palette for datasets, prediction files and image logs: PASCAL VOC's colour map."""

from seglab.data.palette import default_palette


def test_default_palette_is_vocs_colour_map_with_a_distinct_colour_per_class():
    palette = default_palette()
    assert palette.shape == (256, 3) and palette.dtype.name == "uint8"
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128]  # VOC's "person"
    assert len({tuple(c) for c in palette.tolist()}) == 256
    assert (default_palette(21) == palette[:21]).all()
