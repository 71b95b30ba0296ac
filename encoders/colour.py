"""A photo's colours as a short fixed descriptor: the second look at an image, beside the learned encoder.

The encoder's image vector comes from a tower trained on ImageNet and heads trained on Flickr captions, and it
hardly tells a green kurta from a white one: on the fashion catalog's dev photos the products it finds most alike
share the query's type far more often than its colour, and graph expansion then spreads the wrong colour over the
whole first page (a green kurta's photo listed ten white kurtas). The colours are in the pixels. This descriptor
is the histogram of the photo's foreground over hue, saturation and brightness: the pixels that differ from the
photo's border (a product shot's plain background), or every pixel when nearly none do; grey pixels (low
saturation, or dark) go to four brightness bins, the others to 12 hues (30 degrees each, centred on red, orange,
yellow, ...) x 2 saturations x 2 brightnesses, each pixel shared between neighbouring bins. The
square roots of the shares are stored, so that the dot product of two descriptors is their Bhattacharyya
coefficient: 1 for the same colours in the same proportions.
"""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image

COLOUR_VERSION = 1
"""Bumped when the same photo gives another descriptor, so that an ingest computes it again."""
SIDE = 64
"""The photo is shrunk to fit this square first: colours need few pixels."""
HUES = 12
GREYS = 4
HUE_BINS = HUES * 4
BINS = HUE_BINS + GREYS
"""52: 12 hues x (2 saturations x 2 brightnesses), then 4 grey levels."""
BACKGROUND_DISTANCE = 0.12
"""A pixel whose channels all lie within this (of 1) of the border's median colour is background."""
MIN_FOREGROUND = 0.05
"""Below this share of foreground pixels the whole photo counts (a close-up, a photo without a plain border)."""
GREY_SATURATION = 0.2
DARK = 0.15
"""Pixels less saturated than GREY_SATURATION, or darker than DARK, are grey: their hue is noise."""
SATURATIONS = (0.4, 0.8)
BRIGHTNESSES = (0.4, 0.85)
GREY_LEVELS = (0.125, 0.375, 0.625, 0.875)
"""The centres of the bins along each axis. A pixel is shared between the two bins nearest it on each axis
(linearly, hue around its circle), so that two nearly equal colours either side of a bin's edge still match."""


def colour_descriptor(image: Image.Image) -> np.ndarray:
    """(BINS,) float32: the square roots of the foreground's shares per colour bin (unit length)."""
    small = image.convert("RGB")
    small.thumbnail((SIDE, SIDE))
    rgb = np.asarray(small, np.float32) / 255.0
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    foreground = np.abs(rgb - np.median(border, axis=0)).max(axis=2) > BACKGROUND_DISTANCE
    pixels = rgb[foreground] if foreground.mean() >= MIN_FOREGROUND else rgb.reshape(-1, 3)
    top, bottom = pixels.max(axis=1), pixels.min(axis=1)
    chroma = top - bottom
    saturation = np.where(top > 0, chroma / np.maximum(top, 1e-6), 0.0)
    r, g, b = pixels.T
    safe = np.maximum(chroma, 1e-6)
    sector = np.where(top == r, ((g - b) / safe) % 6, np.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4))
    grey = (saturation < GREY_SATURATION) | (top < DARK)
    hue = sector[~grey] / 6.0 * HUES  # bin centres at 0 (red), 1 (orange), ...: a red either side of 0 is one red
    first = np.floor(hue).astype(np.int64)
    hues = ((first % HUES, 1.0 - (hue - first)), ((first + 1) % HUES, hue - first))
    sats, brights = _nearest_two(saturation[~grey], SATURATIONS), _nearest_two(top[~grey], BRIGHTNESSES)
    counts = np.zeros(BINS, np.float64)
    for (h, wh), (s, ws), (v, wv) in itertools.product(hues, sats, brights):
        counts += np.bincount(h * 4 + s * 2 + v, weights=wh * ws * wv, minlength=BINS)
    for level, weight in _nearest_two(top[grey], GREY_LEVELS):
        counts += np.bincount(HUE_BINS + level, weights=weight, minlength=BINS)
    return np.sqrt(counts / max(float(counts.sum()), 1e-12)).astype(np.float32)


def _nearest_two(values: np.ndarray, centres: tuple[float, ...]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((lower bin, its weight), (upper bin, its weight)) of each value between the two centres around it (the end
    bin alone, weight 1, beyond the first or the last centre)."""
    position = np.interp(values, centres, np.arange(len(centres), dtype=np.float64))
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, len(centres) - 1)
    return (lower, 1.0 - (position - lower)), (upper, position - lower)


def hue_share(descriptors: np.ndarray) -> np.ndarray:
    """(n,) the share of each descriptor's pixels that have a hue (0 for a greyscale photo)."""
    return (descriptors[:, :HUE_BINS] ** 2).sum(axis=1)
