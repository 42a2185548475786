"""Build the YOLO-format training folder of a detector (polyps, or capsule bleeding).

Polyp frames come from a Kvasir-SEG folder (or a YOLO/LabelImg folder); polyp-free
frames from the non-polyp classes of a HyperKvasir ``labeled-images`` tree go in as
background images (an empty label file) to cut false alarms.

The split is the classifier's (``split.json``): HyperKvasir's ``polyps`` class holds the
same frames as Kvasir-SEG, so the detector's validation polyps are the classifier's
validation polyps, near-duplicate groups stay on one side for both models, and the
runtime never sees a frame in validation for one model that the other trained on.

Overlays: every background frame (HyperKvasir) carries the black position-guide inset,
about half the polyp frames (Kvasir-SEG) show mucosa there. A detector can learn
"black inset = no polyp". Blacking the inset out at run time would hide polyps under it
(``python -m benchmarks.detector_overlays``), so the detector sees frames as they are,
and training breaks the shortcut instead: the inset region of a polyp frame is blacked
out (seeded, ``inset_blackout`` of them) where no polyp mask reaches into it, so that
a black inset says nothing about polyps. Validation frames are never altered.

Capsule frames (a YOLO folder with its own split, ``images/<file>`` keys): with a field
of view (``edge.fov``), every frame, training and validation, is written with everything
outside it set to 0, exactly as the runtime's preprocessing sets it.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.errors import BadInputError
from edge.eval.dataset import read_split, scan
from edge.eval.detection_data import DetectionSample
from edge.eval.detector import load_detection_folder, split_stems
from edge.fov import FieldOfView
from edge.frames import read_image
from edge.preprocess import OVERLAY_REGIONS, black_out
from edge.types import Skipped

INSET = OVERLAY_REGIONS["position-inset"]
INSET_BLACK = 0.6  # fraction of near-black pixels that makes an inset "already black"
MASK_REACH = 0.01  # a polyp mask covering more of the inset than this keeps it visible


@dataclass
class PreparedData:
    root: Path
    yaml: Path
    counts: dict[str, int]
    names: list[str]
    skipped: list[Skipped] = field(default_factory=list)


def _stem_sides(train: set[str], val: set[str]) -> dict[str, str]:
    sides = dict.fromkeys(split_stems(train), "train")
    sides.update(dict.fromkeys(split_stems(val), "val"))
    return sides


def _inset_is_black(image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = INSET.pixels(width, height)
    region = image[y0:y1, x0:x1]
    return bool(region.size and (region.max(axis=2) < 20).mean() > INSET_BLACK)


def _mask_reaches_inset(mask_path: Path, sample: DetectionSample, shape: tuple[int, int]) -> bool:
    height, width = shape
    x0, y0, x1, y1 = INSET.pixels(width, height)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
    if mask is not None and mask.shape == (height, width):
        return bool((mask[y0:y1, x0:x1] > 127).mean() > MASK_REACH)
    # No usable mask: judge by the boxes.
    return any(b.x0 < x1 and b.x1 > x0 and b.y0 < y1 and b.y1 > y0 for b in sample.boxes)


def _label_lines(sample: DetectionSample, names: list[str], width: int, height: int) -> str:
    lines = []
    for box, label in zip(sample.boxes, sample.labels, strict=True):
        cx, cy = (box.x0 + box.x1) / 2 / width, (box.y0 + box.y1) / 2 / height
        cls = names.index(label)
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {box.width / width:.6f} {box.height / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _write(
    out: Path, side: str, name: str, source: Path, labels: str, image: np.ndarray | None
) -> None:
    target = out / "images" / side / name
    if image is None:
        shutil.copyfile(source, target)  # unchanged frames keep their bytes
    else:
        target = target.with_suffix(".png")  # lossless: the change is all that differs
        cv2.imwrite(str(target), image)
    (out / "labels" / side / (target.stem + ".txt")).write_text(labels, encoding="utf-8")


def _background_frames(hyper_kvasir: Path, train: set[str], val: set[str]) -> dict[str, list[Path]]:
    dataset = scan(hyper_kvasir)
    frames: dict[str, list[Path]] = {"train": [], "val": []}
    for sample in dataset.samples:
        if sample.label == "polyps":
            continue
        key = sample.key(dataset.root)
        if key in val:
            frames["val"].append(sample.path)
        elif key in train:
            frames["train"].append(sample.path)
    return frames


def prepare(
    polyps: Path,
    out: Path,
    split_file: Path,
    hyper_kvasir: Path | None = None,
    n_background: int = 250,
    inset_blackout: float = 0.75,
    seed: int = 0,
    fov: FieldOfView | None = None,
) -> PreparedData:
    """Write ``out/images/{train,val}``, ``out/labels/{train,val}`` and ``out/data.yaml``.

    Every validation background frame is kept (false alarms per 100 polyp-free frames
    are measured on them); ``n_background`` training background frames are drawn,
    seeded, across the classes.
    """
    data = load_detection_folder(polyps)
    names = sorted({label for s in data.samples for label in s.labels}) or ["polyp"]
    train_keys, val_keys = read_split(split_file)
    sides = _stem_sides(train_keys, val_keys)
    missing = [s.path.name for s in data.samples if s.path.stem not in sides]
    if missing:
        raise BadInputError(
            f"{split_file}: {len(missing)} polyp frames of {polyps} are in neither side "
            f"of the split (first: {missing[0]}); pass the split made for this data"
        )
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)
    for kind in ("images", "labels"):
        for side in ("train", "val"):
            (out / kind / side).mkdir(parents=True)
    counts = dict.fromkeys(
        ("train_polyp", "val_polyp", "train_background", "val_background", "inset_blacked"), 0
    )
    counts["fov_applied"] = 0
    skipped = list(data.skipped)
    for sample in data.samples:
        side = sides[sample.path.stem]
        try:
            image = read_image(sample.path)
        except BadInputError as exc:
            skipped.append(Skipped.from_error(sample.path, exc))
            continue
        height, width = image.shape[:2]
        changed: np.ndarray | None = None  # BGR, to be written losslessly
        if (
            side == "train"
            and sample.boxes
            and rng.random() < inset_blackout
            and not _inset_is_black(image)
            and not _mask_reaches_inset(
                polyps / "masks" / (sample.path.stem + ".png"), sample, (height, width)
            )
        ):
            changed = cv2.cvtColor(black_out(image, [INSET]), cv2.COLOR_RGB2BGR)
            counts["inset_blacked"] += 1
        if fov is not None:
            bgr = changed if changed is not None else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            changed = fov.apply(np.asarray(bgr, np.uint8))
            counts["fov_applied"] += 1
        lines = _label_lines(sample, names, width, height)
        _write(out, side, sample.path.name, sample.path, lines, changed)
        counts[f"{side}_{'polyp' if sample.boxes else 'background'}"] += 1
    if hyper_kvasir is not None:
        frames = _background_frames(hyper_kvasir, train_keys, val_keys)
        chosen = {
            "train": rng.sample(frames["train"], min(n_background, len(frames["train"]))),
            "val": frames["val"],
        }
        for side, paths in chosen.items():
            for path in paths:
                _write(out, side, f"bg-{path.parent.name}-{path.name}", path, "", None)
                counts[f"{side}_background"] += 1
    if counts["val_polyp"] == 0 or counts["train_polyp"] == 0:
        raise BadInputError(f"{split_file}: leaves no polyp frames on one side")
    yaml = out / "data.yaml"
    yaml.write_text(
        f"path: {out}\ntrain: images/train\nval: images/val\nnc: {len(names)}\nnames: {names}\n",
        encoding="utf-8",
    )
    (out / "prepared.json").write_text(json.dumps(counts, indent=2), encoding="utf-8")
    return PreparedData(out, yaml, counts, names, skipped)
