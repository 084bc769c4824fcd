"""Simple, measurable image features: brightness, contrast, colourfulness, sharpness.

They are cheap (the image is reduced to at most 256 px first) and explainable, so a weak cover can be
told what differs from the account's best posts ("contrast 30% below your top-performing posts").

* brightness: mean luminance (0-1, Rec. 601 weights);
* contrast: standard deviation of luminance (0-0.5);
* colourfulness: Hasler and Süsstrunk's metric on the rg/yb opponent channels (0-1 scaled by 255);
* sharpness: variance of the 4-neighbour Laplacian of the luminance (higher = more fine detail).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_SIDE = 256


def image_features(data: bytes) -> dict[str, float]:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        rgb.thumbnail((MAX_SIDE, MAX_SIDE))
        pixels = np.asarray(rgb, dtype=np.float64) / 255.0
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    rg, yb = red - green, 0.5 * (red + green) - blue
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    laplacian = (
        -4 * luminance[1:-1, 1:-1]
        + luminance[:-2, 1:-1] + luminance[2:, 1:-1] + luminance[1:-1, :-2] + luminance[1:-1, 2:]
    )  # fmt: skip
    return {
        "brightness": round(float(luminance.mean()), 4),
        "contrast": round(float(luminance.std()), 4),
        "colourfulness": round(colourfulness, 4),
        "sharpness": round(float(laplacian.var()) if laplacian.size else 0.0, 6),
    }
