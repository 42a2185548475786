"""How a detector holds up when frames look like another hospital's: mAP@0.5, recall and
the frame-level decision under what changes between sites, on a labelled split.

    python -m benchmarks.detector_robustness --data ../shared/data/kvasir-seg \\
        --split edge/bundled/classifier/edgecnn/split.json \\
        [--background ../shared/data/hyper-kvasir] [--model NAME_OR_PATH] [--backend litert]

The proxy for "another hospital": every shift is applied to the decoded frame before the
detector's own preprocessing, the same for every frame, and keeps the frame's size so
that the ground-truth boxes still hold. A drop says the model leans on that property of
its development data. The colour, exposure, blur and JPEG shifts are the classifier's
(``benchmarks.robustness``); the rest are the detector's: a lower-resolution scope,
optics that darken the rim, sensor noise, motion blur and specular highlights (the
bright reflections of a wet mucosa under another light source). The zoomed-out shifts
shrink the frame onto a black canvas of its own size (a wider-angle scope, or a polyp
seen from farther away: smaller polyps, as another hospital's may be) and map the boxes
found back, so the ground truth still holds. Prints a Markdown table and, with
``--json``, the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from benchmarks.robustness import SHIFTS as COLOUR_SHIFTS
from edge.bundled import resolve_model
from edge.errors import CapsuleEdgeError
from edge.eval.detector import evaluate_detector
from edge.models.detector import Detector
from edge.preprocess import Image
from edge.types import BBox, Detection, Detections

Shift = Callable[[Image], Image]


def _seeded(image: Image) -> np.random.Generator:
    """The same random draw for the same frame, whichever model runs."""
    return np.random.default_rng(int(image[::17, ::13].sum()) % (2**32))


def resolution(factor: float) -> Shift:
    """A scope of lower resolution: down by ``factor``, back up to the frame's size."""

    def shift(image: Image) -> Image:
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))))
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)

    return shift


def vignette(strength: float) -> Shift:
    """Optics that lose light towards the rim: ``1 - strength * r^2`` (r = 1 at a corner)."""

    def shift(image: Image) -> Image:
        h, w = image.shape[:2]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        gain = (1 - strength * r2)[..., None]
        return np.asarray(np.clip(image * gain, 0, 255), np.uint8)

    return shift


def noise(sigma: float) -> Shift:
    def shift(image: Image) -> Image:
        grain = _seeded(image).normal(0, sigma, image.shape)
        return np.clip(image + grain, 0, 255).astype(np.uint8)

    return shift


def motion_blur(length: int) -> Shift:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1 / length
    return lambda image: np.asarray(cv2.filter2D(image, -1, kernel), np.uint8)


def highlights(count: int) -> Shift:
    """``count`` saturated white specular spots of 1-4 % of the frame's side."""

    def shift(image: Image) -> Image:
        rng = _seeded(image)
        out = image.copy()
        h, w = image.shape[:2]
        for _ in range(count):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(w * rng.uniform(0.01, 0.04)) + 1, int(h * rng.uniform(0.01, 0.04)) + 1)
            cv2.ellipse(out, centre, axes, float(rng.uniform(0, 180)), 0, 360, (255, 255, 255), -1)
        return out

    return shift


class ZoomedOut:
    """A detector that sees each frame shrunk by ``factor`` at the centre of a black
    canvas of the frame's size, its boxes mapped back to the frame."""

    def __init__(self, detector: Detector, factor: float) -> None:
        self.detector, self.factor = detector, factor

    @property
    def conf_threshold(self) -> float:
        return self.detector.conf_threshold

    @conf_threshold.setter
    def conf_threshold(self, value: float) -> None:
        self.detector.conf_threshold = value

    def detect(self, frame: Image) -> Detections:
        h, w = frame.shape[:2]
        sw, sh = max(1, round(w * self.factor)), max(1, round(h * self.factor))
        x0, y0 = (w - sw) // 2, (h - sh) // 2
        canvas = np.zeros_like(frame)
        canvas[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(
            frame, (sw, sh), interpolation=cv2.INTER_AREA
        )
        found = self.detector.detect(canvas)
        fx, fy = sw / w, sh / h

        def back(b: BBox) -> BBox:
            return BBox((b.x0 - x0) / fx, (b.y0 - y0) / fy, (b.x1 - x0) / fx, (b.y1 - y0) / fy)

        items = tuple(
            Detection(back(d.box).clip(w, h), d.score, d.label, d.class_id) for d in found.items
        )
        return Detections(w, h, items)


ZOOMS = {"zoomed out (x0.7)": 0.7, "zoomed out (x0.5)": 0.5}

SHIFTS: dict[str, Shift] = {
    **{k: v for k, v in COLOUR_SHIFTS.items() if "frame (x" not in k},  # sizes kept here
    "lower resolution (x0.5, back up)": resolution(0.5),
    "lower resolution (x0.33, back up)": resolution(1 / 3),
    "rim darkening (vignette 0.5)": vignette(0.5),
    "sensor noise (sigma 8)": noise(8.0),
    "motion blur (9 px)": motion_blur(9),
    "specular highlights (12 spots)": highlights(12),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="Kvasir-SEG or YOLO folder")
    parser.add_argument("--split", type=Path, help="a split.json: its validation frames")
    parser.add_argument("--background", type=Path, help="HyperKvasir tree: polyp-free frames")
    parser.add_argument("--model", help="bundled name or model file (default: the bundled one)")
    parser.add_argument("--backend", default="litert")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        card = resolve_model(args.model, "detection", args.backend)
        with Detector.open(card.path, args.backend) as det:
            print(f"{card.name} ({card.precision} {card.format}) on {args.backend}, {args.data}\n")
            print("| shift | mAP@0.5 | recall | frame macro-F1 | false-alarm frames/100 |")
            print("|---|---:|---:|---:|---:|")
            results = {}
            runs: list[tuple[str, Shift | None, float | None]] = [
                *((name, shift, None) for name, shift in SHIFTS.items()),
                *((name, None, factor) for name, factor in ZOOMS.items()),
            ]
            for name, shift, factor in runs:
                model = det if factor is None else ZoomedOut(det, factor)
                s = evaluate_detector(
                    model,  # type: ignore[arg-type]  # anything with detect and conf_threshold
                    args.data,
                    args.split,
                    args.background,
                    transform=shift,
                ).summary
                results[name] = s.as_dict()
                fp = (
                    "-"
                    if s.fp_frames_per_100_background is None
                    else f"{s.fp_frames_per_100_background:.1f}"
                )
                print(
                    f"| {name} | {s.map50:.3f} | {s.recall:.3f} | {s.frame_macro_f1:.3f} | {fp} |",
                    flush=True,
                )
        if args.json:
            args.json.write_text(json.dumps({"model": card.name, "shifts": results}, indent=1))
    except CapsuleEdgeError as exc:
        print(f"detector_robustness: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
