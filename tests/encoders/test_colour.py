"""The colour descriptor: the product's colours, not its background's."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mmkg.encoders.colour import BINS, HUES, colour_descriptor

GREYS_FROM = HUES * 4
WHITE, BLACK = BINS - 1, GREYS_FROM


def _product(colour: tuple[int, int, int], background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """A product shot: a coloured shape filling the middle of a plain background."""
    image = Image.new("RGB", (200, 300), background)
    image.paste(Image.new("RGB", (100, 180), colour), (50, 60))
    return image


def _shares(image: Image.Image) -> np.ndarray:
    descriptor = colour_descriptor(image)
    assert descriptor.shape == (BINS,) and abs(float(np.linalg.norm(descriptor)) - 1.0) < 1e-5
    return descriptor**2


def _hue_shares(shares: np.ndarray) -> np.ndarray:
    """(HUES,) the shares of each hue, its saturations and brightnesses together."""
    return shares[:GREYS_FROM].reshape(HUES, 4).sum(axis=1)


def test_a_product_on_a_white_background_is_described_by_its_own_colour() -> None:
    """A green kurta photographed on white is green: the white around it is background (only the blended pixels
    at the product's edge, where shrinking the photo mixed the two, are counted as light grey)."""
    green = _hue_shares(_shares(_product((30, 150, 40))))
    assert green.argmax() == 4 and green.sum() > 0.8  # hue 125 of 360 degrees: nearest the fifth centre, 120
    on_grey = _hue_shares(_shares(_product((30, 150, 40), background=(120, 120, 120))))
    assert on_grey.argmax() == 4 and on_grey.sum() > 0.8


def test_photos_of_the_same_colour_are_alike_and_of_other_colours_are_not() -> None:
    """Reds either side of 0 degrees are one red, and two greens either side of a brightness bin's edge one green."""
    red, dark_red, blue = (colour_descriptor(_product(c)) for c in ((200, 20, 30), (170, 25, 20), (20, 40, 200)))
    assert float(red @ dark_red) > 0.85
    assert float(red @ blue) < 0.2  # what they share: the blended edge pixels
    green, darker_green = (colour_descriptor(_product(c)) for c in ((40, 160, 50), (35, 150, 45)))
    assert float(green @ darker_green) > 0.95


def test_a_white_product_on_white_is_white_and_a_black_one_black() -> None:
    """Nearly nothing differs from the border: the whole photo counts, and it is white."""
    white = _shares(Image.new("RGB", (120, 120), (250, 250, 250)))
    black = _shares(_product((10, 10, 10)))
    assert white.argmax() == WHITE and white[WHITE] > 0.99
    assert black.argmax() == BLACK and black[BLACK] > 0.8


def test_a_grey_radiograph_fills_only_the_grey_bins() -> None:
    """A greyscale photo (a radiograph, mode L) has brightness and no hue."""
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (128, 1)), mode="L")
    grey = _shares(ramp)
    assert grey[:GREYS_FROM].sum() == 0.0 and np.count_nonzero(grey[GREYS_FROM:]) >= 3
