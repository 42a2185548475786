"""Frame preprocessing shared by training (``convert/``) and the runtime.

There is exactly one implementation so that training and inference can never drift
apart; the model card records ``PREPROCESSING_ID`` and the runtime refuses a card that
names another.

Endoscopy frames carry burnt-in overlays (a position-guide inset lower left, patient and
timer text along the left edge, a scope icon at the right edge, black corners) that
differ between sources, and therefore between classes in the public datasets. A model
that can see them learns them instead of the mucosa. Neutralisation removes them the
same way for every frame, whatever its source:

1. crop away the left text band entirely (it holds little mucosa and a lot of text);
2. black out what is left of the lower-left inset and the scope icon;
3. resize to the model's square input and black out the four corners with a fixed
   octagon, so that the sources' different corner masks look alike.

The regions are a superset of the overlay regions given in the data README, so a frame
whose overlays were already blacked out preprocesses to the same tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import BadInputError

PREPROCESSING_ID = "overlay-neutralise-v1"

Image = npt.NDArray[np.uint8]

# Frames with a side under this are refused, not classified: a 1x1 image scaled up to
# the model's input is one flat colour, and the bundled classifier called that
# impacted-stool with 0.934. 32 px is below any endoscope's frame and any crop worth a
# finding, and the neutralisation's regions still cover whole pixels there.
MIN_SIDE = 32


def check_frame(image: Image) -> None:
    """An RGB uint8 frame with both sides at least ``MIN_SIDE``, or an error."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame, got shape {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise BadInputError(f"frame is {width}x{height}, under the {MIN_SIDE} px minimum side")


@dataclass(frozen=True)
class Box:
    """A rectangle in fractions of the frame: x0 <= x < x1, y0 <= y < y1."""

    x0: float
    y0: float
    x1: float
    y1: float

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (
            round(self.x0 * width),
            round(self.y0 * height),
            round(self.x1 * width),
            round(self.y1 * height),
        )


# The overlay regions as the data README describes them. Used to *simulate* overlay
# removal when evaluating (``black_out_overlays``), never as the neutralisation itself.
OVERLAY_REGIONS: dict[str, Box] = {
    "position-inset": Box(0.0, 0.60, 0.38, 1.0),
    "text-band": Box(0.0, 0.0, 0.25, 1.0),
    "scope-icon": Box(0.92, 0.72, 1.0, 0.92),
}

# Neutralisation, with a margin around each region.
CROP_LEFT = 0.27  # everything left of this goes: text band and most of the inset
NEUTRALISE_REGIONS: tuple[Box, ...] = (
    Box(0.0, 0.56, 0.42, 1.0),  # rest of the position-guide inset
    Box(0.89, 0.68, 1.0, 0.96),  # scope icon
)
CORNER_FRACTION = 0.22  # octagon corner legs, as a fraction of the square side


def black_out(image: Image, boxes: tuple[Box, ...] | list[Box]) -> Image:
    """Return a copy of ``image`` with every box set to black."""
    out = image.copy()
    height, width = out.shape[:2]
    for box in boxes:
        x0, y0, x1, y1 = box.pixels(width, height)
        out[y0:y1, x0:x1] = 0
    return out


def black_out_overlays(image: Image) -> Image:
    """The frame with the README's overlay regions blacked out (an evaluation check)."""
    return black_out(image, list(OVERLAY_REGIONS.values()))


def neutralise_overlays(image: Image) -> Image:
    """Crop the text band and black out the remaining overlay regions (steps 1 and 2)."""
    width = image.shape[1]
    blacked = black_out(image, NEUTRALISE_REGIONS)
    return blacked[:, round(CROP_LEFT * width) :]


def _octagon_mask(size: int) -> npt.NDArray[np.bool_]:
    leg = CORNER_FRACTION * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    far = size - 1 + 1.0
    inside: npt.NDArray[np.bool_] = (x + y >= leg) & ((far - x) + y >= leg)
    inside &= (x + (far - y) >= leg) & ((far - x) + (far - y) >= leg)
    return inside


_MASKS: dict[int, npt.NDArray[np.bool_]] = {}


def prepare(image: Image, size: int) -> Image:
    """Neutralise overlays and resize an RGB uint8 frame to the model's ``size`` x ``size``."""
    check_frame(image)
    cropped = neutralise_overlays(image)
    small: Image = np.asarray(
        cv2.resize(cropped, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )
    mask = _MASKS.get(size)
    if mask is None:
        mask = _MASKS.setdefault(size, _octagon_mask(size))
    small[~mask] = 0
    return small


# The detector sees whole frames, overlays included (see convert/detector_data.py for
# why): only an aspect-keeping resize onto a grey square, as yolov5 trains and validates.
LETTERBOX_ID = "letterbox-114-v1"
# A capsule detector's: everything outside its field of view (the card's
# ``preprocessing.fov``, see edge/fov.py) set to 0, then the same letterbox.
FOV_LETTERBOX_ID = "fov-letterbox-114-v1"
LETTERBOX_PAD = 114


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed on the model's square: input = frame * ratio + pad."""

    ratio: float
    pad_x: float
    pad_y: float


def letterbox(image: Image, size: int) -> tuple[Image, Letterbox]:
    """Resize keeping the aspect ratio so the long side is ``size``; centre on grey."""
    check_frame(image)
    height, width = image.shape[:2]
    ratio = size / max(height, width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    if (new_w, new_h) != (width, height):
        interp = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        image = np.asarray(cv2.resize(image, (new_w, new_h), interpolation=interp), np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), LETTERBOX_PAD, np.uint8)
    canvas[top : top + new_h, left : left + new_w] = image
    return canvas, Letterbox(ratio, float(left), float(top))
