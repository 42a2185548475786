"""How overlays bear on the polyp detector: the measurement behind its preprocessing.

Part 1 (data only): how much of each polyp lies under the overlay regions, i.e. what
blacking them out at run time would hide, and how the position-guide inset differs
between the polyp frames (Kvasir-SEG) and the polyp-free frames (HyperKvasir).

Part 2 (with a detector, ``--model``): validation mAP and recall on frames as they are,
with the README overlay regions blacked out, and with only the inset blacked out where
no polyp reaches into it (if the model had learnt "black inset = no polyp", recall
would fall there); false-alarm frames on polyp-free frames.

    python -m benchmarks.detector_overlays --data ../shared/data/kvasir-seg \
        --background ../shared/data/hyper-kvasir [--model M --split S]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.eval.dataset import scan
from edge.eval.detection_metrics import ImageResult, summarise_detections
from edge.eval.detector import iter_images, labelled_frames
from edge.frames import read_image
from edge.models.detector import Detector
from edge.preprocess import NEUTRALISE_REGIONS, OVERLAY_REGIONS, Box, black_out

INSET = OVERLAY_REGIONS["position-inset"]


def _region_mask(height: int, width: int, boxes: list[Box]) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for box in boxes:
        x0, y0, x1, y1 = box.pixels(width, height)
        mask[y0:y1, x0:x1] = True
    return mask


def _inset_black(image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = INSET.pixels(width, height)
    return bool((image[y0:y1, x0:x1].max(axis=2) < 20).mean() > 0.6)


def hidden_fractions(data: Path) -> dict[str, np.ndarray]:
    """Per polyp mask, the share of its pixels under each candidate blackout."""
    candidates = {
        "README overlay regions": list(OVERLAY_REGIONS.values()),
        "inset only": [INSET],
        "classifier neutralisation": [*NEUTRALISE_REGIONS, Box(0.0, 0.0, 0.27, 1.0)],
    }
    out: dict[str, list[float]] = {name: [] for name in candidates}
    for path in sorted((data / "masks").glob("*.png")):
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None or not (mask > 127).any():
            continue
        polyp = mask > 127
        for name, boxes in candidates.items():
            region = _region_mask(polyp.shape[0], polyp.shape[1], boxes)
            out[name].append(float((polyp & region).sum() / polyp.sum()))
    return {name: np.asarray(v) for name, v in out.items()}


def inset_states(data: Path, background: Path) -> dict[str, float]:
    polyp = [read_image(p) for p in sorted((data / "images").glob("*.jpg"))]
    states = {"polyp frames (Kvasir-SEG)": float(np.mean([_inset_black(i) for i in polyp]))}
    tree = scan(background)
    free = [s.path for s in tree.samples if s.label != "polyps"]
    states["polyp-free frames (HyperKvasir)"] = float(
        np.mean([_inset_black(read_image(p)) for p in free])
    )
    return states


def model_check(model: Path, backend: str, data: Path, split: Path, background: Path) -> None:
    frames, skipped = labelled_frames(data, split, background)

    def as_is(image: np.ndarray) -> np.ndarray:
        return image

    def overlays_blacked(image: np.ndarray) -> np.ndarray:
        return black_out(image, list(OVERLAY_REGIONS.values()))

    variants = {"as they are": as_is, "README overlays blacked out": overlays_blacked}
    with Detector.open(model, backend, conf_threshold=0.001) as det:
        for name, change in variants.items():
            results = []
            for frame, image in iter_images(frames, skipped):
                found = det.detect(change(image))
                results.append(ImageResult(frame.truth, found.items))
            s = summarise_detections(results)
            fp = s.fp_frames_per_100_background
            print(
                f"  {name:<30} mAP@0.5 {s.map50:.3f}  mAP@0.5:0.95 {s.map50_95:.3f}  "
                f"recall {s.recall:.3f}  false-alarm frames/100 "
                + ("-" if fp is None else f"{fp:.1f}")
            )
        # The shortcut check: polyp frames whose inset shows mucosa and holds no polyp.
        masks = data / "masks"
        pairs: list[tuple[ImageResult, ImageResult]] = []
        for frame, image in iter_images([f for f in frames if f.truth], skipped):
            mask = cv2.imread(str(masks / (frame.path.stem + ".png")), cv2.IMREAD_GRAYSCALE)
            if mask is None or _inset_black(image):
                continue
            h, w = mask.shape
            x0, y0, x1, y1 = INSET.pixels(w, h)
            if (mask[y0:y1, x0:x1] > 127).mean() > 0.01:
                continue
            plain = det.detect(image).items
            blacked = det.detect(black_out(image, [INSET])).items
            pairs.append((ImageResult(frame.truth, plain), ImageResult(frame.truth, blacked)))
        if pairs:
            a = summarise_detections([p[0] for p in pairs])
            b = summarise_detections([p[1] for p in pairs])
            print(
                f"  {len(pairs)} polyp frames with a visible, polyp-free inset: recall "
                f"{a.recall:.3f} as they are, {b.recall:.3f} with the inset blacked out "
                f"(mAP@0.5 {a.map50:.3f} -> {b.map50:.3f})"
            )
    for skip in skipped:
        print(f"  skipped {skip}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="Kvasir-SEG folder (with masks/)")
    p.add_argument("--background", type=Path, required=True, help="HyperKvasir tree")
    p.add_argument("--model", type=Path, help="a detector model or card")
    p.add_argument("--backend", default="litert")
    p.add_argument("--split", type=Path, help="split.json (its validation side is measured)")
    args = p.parse_args(argv)

    print("Share of each polyp's mask under a blackout (Kvasir-SEG masks):")
    for name, f in hidden_fractions(args.data).items():
        print(
            f"  {name:<27} polyps {len(f)}: mean {f.mean():.3f}; more than 25 % hidden "
            f"{(f > 0.25).mean():.3f}, 50 % {(f > 0.5).mean():.3f}, 90 % {(f > 0.9).mean():.3f}"
        )
    print("Frames whose position-guide inset is black:")
    for name, share in inset_states(args.data, args.background).items():
        print(f"  {name:<32} {share:.3f}")
    if args.model:
        if args.split is None:
            p.error("--model needs --split (measure on validation frames)")
        print(f"Detector {args.model} on the validation split:")
        model_check(args.model, args.backend, args.data, args.split, args.background)
    return 0


if __name__ == "__main__":
    sys.exit(main())
