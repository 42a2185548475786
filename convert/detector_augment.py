"""What changes between hospitals, as training augmentation for a detector.

A polyp detector trained on one hospital's frames meets another's scope optics and
resolution, white balance, exposure, blur, compression and specular highlights. yolov5's
own photometric augmentation is a hue/saturation/value jitter (and, when the albumentations
package is installed, blur and CLAHE at 1 %). ``HospitalShifts`` adds the rest: each shift
independently, with its own probability, after mosaic and before yolov5's HSV jitter. Every
shift keeps the geometry, so the labels pass through unchanged.

The families are those of ``benchmarks.detector_robustness`` (the proxy for another
hospital), drawn from ranges rather than its fixed settings, and with soft-edged rather
than hard highlights: the benchmark then measures what a shift the model trained near
costs, not a memorised one. The real judge is the other hospital's frames.

``install()`` puts it where yolov5's data loader builds its Albumentations step; it is
called in the training process before the loaders exist, and forked workers inherit it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import cv2
import numpy as np

Image = np.ndarray  # H x W x 3 uint8, BGR as yolov5 loads it (the shifts are channel-blind
# except white balance, which draws each gain independently)


def white_balance(im: Image) -> Image:
    gains = np.clip(np.random.normal(1.0, 0.08, 3), 0.8, 1.25)
    return np.clip(im * gains, 0, 255).astype(np.uint8)


def exposure(im: Image) -> Image:
    gamma = math.exp(random.uniform(math.log(0.6), math.log(1.6)))
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
    return np.asarray(table[im], np.uint8)


def blur(im: Image) -> Image:
    if random.random() < 0.5:
        return np.asarray(cv2.GaussianBlur(im, (0, 0), random.uniform(0.6, 2.0)), np.uint8)
    length = random.randint(3, 11)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    angle = random.uniform(0, 180)
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, rotation, (length, length)), np.float32)
    return np.asarray(cv2.filter2D(im, -1, kernel / max(float(kernel.sum()), 1e-6)), np.uint8)


def compression(im: Image) -> Image:
    quality = random.randint(25, 90)
    ok, data = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    return im if decoded is None else np.asarray(decoded, np.uint8)


def noise(im: Image) -> Image:
    grain = np.random.normal(0.0, random.uniform(2.0, 10.0), im.shape)
    return np.clip(im + grain, 0, 255).astype(np.uint8)


def resolution(im: Image) -> Image:
    h, w = im.shape[:2]
    factor = random.uniform(0.3, 0.8)
    small = cv2.resize(
        im, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


def vignette(im: Image) -> Image:
    h, w = im.shape[:2]
    y, x = np.ogrid[:h, :w]
    r2 = np.asarray(((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2, np.float64)
    gain = 1.0 - random.uniform(0.2, 0.6) * np.clip(r2 / 2.0, 0, 1)
    return np.clip(im * gain[..., None], 0, 255).astype(np.uint8)


def highlights(im: Image) -> Image:
    """Specular reflections: 1-12 near-white spots of 0.5-5 % of the side, soft-edged."""
    h, w = im.shape[:2]
    mask = np.zeros((h, w), np.float32)
    for _ in range(random.randint(1, 12)):
        centre = (random.randrange(w), random.randrange(h))
        axes = (
            max(1, int(w * random.uniform(0.005, 0.05))),
            max(1, int(h * random.uniform(0.005, 0.05))),
        )
        cv2.ellipse(mask, centre, axes, random.uniform(0, 180), 0, 360, 1.0, -1)
    soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), random.uniform(0.5, 2.5)))[..., None]
    tint = np.random.uniform(235, 255, 3)
    return np.clip(im * (1 - soft) + tint * soft, 0, 255).astype(np.uint8)


# shift -> probability it is applied to a training frame (independently)
SHIFTS: dict[Callable[[Image], Image], float] = {
    white_balance: 0.4,
    exposure: 0.3,
    resolution: 0.2,
    blur: 0.2,
    noise: 0.2,
    compression: 0.3,
    vignette: 0.2,
    highlights: 0.3,
}


class HospitalShifts:
    """Drop-in for yolov5's ``Albumentations`` step: ``(im, labels) -> (im, labels)``."""

    def __init__(self, size: int = 640) -> None:  # yolov5 passes the input size
        self.size = size

    def __call__(self, im: Image, labels: np.ndarray, p: float = 1.0) -> tuple[Image, np.ndarray]:
        if random.random() < p:
            for shift, chance in SHIFTS.items():
                if random.random() < chance:
                    im = shift(im)
        return np.ascontiguousarray(im), labels


def install() -> None:
    """Make yolov5's training loaders use ``HospitalShifts`` (before they are built)."""
    from yolov5.utils import dataloaders

    dataloaders.Albumentations = HospitalShifts
