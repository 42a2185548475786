"""How a classifier holds up when frames look like another site's: accuracy and macro-F1
on a labelled set under colour, exposure, blur, JPEG and resolution shifts.

    python -m benchmarks.robustness --data DIR [--split SPLIT] [--model PATH] [--backend litert]

Every shift is applied to the decoded frame before the runtime's own preprocessing, the
same way for every class, so a drop says the model leans on that property of the
development data. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.bundled import default_model
from edge.errors import CapsuleEdgeError
from edge.eval.classifier import evaluate_classifier
from edge.frames import decode_image
from edge.models.classifier import Classifier
from edge.preprocess import Image


def _gain(r: float, g: float, b: float) -> Callable[[Image], Image]:
    def shift(image: Image) -> Image:
        return np.clip(image * np.array([r, g, b], dtype=np.float32), 0, 255).astype(np.uint8)

    return shift


def _gamma(gamma: float) -> Callable[[Image], Image]:
    table = (255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
    return lambda image: table[image]


def _jpeg(quality: int) -> Callable[[Image], Image]:
    def recompress(image: Image) -> Image:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        _, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return decode_image(data.tobytes(), "recompressed frame")

    return recompress


def _scale(factor: float) -> Callable[[Image], Image]:
    def rescale(image: Image) -> Image:
        h, w = image.shape[:2]
        size = (round(w * factor), round(h * factor))
        return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), np.uint8)

    return rescale


SHIFTS: dict[str, Callable[[Image], Image]] = {
    "none": lambda image: image,
    "warmer (R x1.15, B x0.85)": _gain(1.15, 1.0, 0.85),
    "cooler (R x0.85, B x1.15)": _gain(0.85, 1.0, 1.15),
    "darker (gamma 1.5)": _gamma(1.5),
    "brighter (gamma 0.67)": _gamma(0.67),
    "blur (Gaussian 5x5)": lambda image: np.asarray(cv2.GaussianBlur(image, (5, 5), 0), np.uint8),
    "JPEG quality 40": _jpeg(40),
    "HD frame (x3.75 upscale)": _scale(3.75),
    "small frame (x0.5)": _scale(0.5),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="class-folder dataset root")
    parser.add_argument("--split", type=Path, help="a training split.json: its validation frames")
    parser.add_argument("--model", help="model file or card (default: the bundled model)")
    parser.add_argument("--backend", default="litert")
    args = parser.parse_args(argv)
    try:
        card = args.model or default_model("classification", args.backend).path
        with Classifier.open(card, args.backend) as clf:
            print(f"{clf.card.name} on {args.backend}, {args.data}\n")
            print("| shift | accuracy | macro-F1 |\n|---|---:|---:|")
            for name, shift in SHIFTS.items():
                result = evaluate_classifier(clf, args.data, split=args.split, transform=shift)
                m = result.metrics
                print(f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |", flush=True)
            print(f"\n{m['n']} frames, {len(result.skipped)} unreadable skipped")
    except CapsuleEdgeError as exc:
        print(f"robustness: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
