"""Conversion between digit images and the 64 features of scikit-learn's digits dataset.

A digits sample is an 8x8 grid of ink values from 0 (background) to 16 (full ink). On disk,
an image is 8-bit grayscale where 0 is background and 255 is full ink, at any size: reading
resizes it to 8x8 with a box filter, which averages each block of pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIDE = 8
MAX_INK = 16
MAX_PIXEL = 255


def read_image_features(path: Path | str) -> np.ndarray:
    """Read the image at ``path`` and return its 64 features as float64 values in 0..16.

    Raises the Pillow or OS error for a file that is missing, empty, truncated or not an
    image (usually UnidentifiedImageError or another OSError).
    """
    with Image.open(path) as image:
        # load() decodes the whole file here, so a truncated image fails now and not later.
        image.load()
        grayscale = image.convert("L")

    small = grayscale.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64).reshape(-1)
    return pixels * (MAX_INK / MAX_PIXEL)


def features_to_image(features: np.ndarray, side: int) -> Image.Image:
    """Return a ``side`` x ``side`` grayscale image of 64 digit features in 0..16.

    Each feature becomes a square block of equal pixels (nearest-neighbour upscaling), so a
    box-filter resize back to 8x8 recovers each value to within half a gray level (16/510).
    """
    if side % IMAGE_SIDE != 0:
        raise ValueError(f"Image side {side} is not a multiple of {IMAGE_SIDE}. Use 8, 16, 32 or another multiple.")

    grid = np.asarray(features, dtype=np.float64).reshape(IMAGE_SIDE, IMAGE_SIDE)
    pixels = np.rint(np.clip(grid, 0, MAX_INK) * (MAX_PIXEL / MAX_INK)).astype(np.uint8)
    small = Image.fromarray(pixels)
    return small.resize((side, side), Image.Resampling.NEAREST)
