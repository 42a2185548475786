"""Simulated sparse studies built from real frames, for the event tracker.

A sequence is a study read sparsely: the study runs at ``fps`` and every 1 to 3rd frame
is kept, so two kept frames are 0.25-0.75 s apart at the default 4 frames/s. For each of
a few distinct real polyps (Kvasir-SEG), a camera (a random walk with momentum in shift,
zoom, rotation and brightness) visits it one to three times, the polyp often near or
partly over the edge; between visits and between polyps the view holds real polyp-free
HyperKvasir frames (one image per stretch, under the same camera), for 1-4 s between
visits of one polyp (it left the view and comes back elsewhere) and 1-10 s between
polyps (so a different polyp may appear while the last one's track still lives). Each
polyp's box in a frame is the bounding box of its warped Kvasir-SEG mask.

Frames are JPEGs named by their study position (``000123.jpg``), so names sort in frame
order; :class:`Truth` records which frame holds which polyp, where, and how much of it.

:func:`held_out_polyps` and :func:`held_out_backgrounds` take the validation side of the
split the bundled detector was trained on (its card names
``edge/bundled/classifier/edgecnn/split.json``): frames the detector has never seen.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import edge.bundled
from edge.eval.dataset import read_split
from edge.eval.detection_data import load_kvasir_seg
from edge.frames import read_image

Box = tuple[float, float, float, float]

SPLIT = Path(edge.bundled.__file__).parent / "classifier" / "edgecnn" / "split.json"
FRAME_SIZE = (320, 320)  # (w, h)
STUDY_FPS = 4.0
STEP = (1, 3)  # positions from one kept frame to the next
VISITS = (1, 3)
VISIT_FRAMES = (3, 8)
LEAVE_S = (1.0, 4.0)  # polyp-free time between two visits of one polyp
BETWEEN_S = (1.0, 10.0)  # polyp-free time between two polyps, and before the first
MIN_VISIBLE = 0.5  # a frame holds the polyp when at least this share of it is in view


@dataclass(frozen=True)
class PolypImage:
    path: Path
    box: Box  # the polyp in the image's pixels
    mask: Path | None = None  # its Kvasir-SEG mask, for exact boxes after warping


@dataclass(frozen=True)
class FrameTruth:
    position: int
    time_s: float
    name: str
    polyp: int | None  # index into Truth.polyps; None on a polyp-free frame
    box: Box | None  # the polyp's box in this frame, clipped to it
    visible: float  # share of the polyp inside the frame (0 on a polyp-free frame)


@dataclass
class Truth:
    frame_size: tuple[int, int]
    polyps: list[str]  # the source image of each polyp, by index
    frames: list[FrameTruth]

    def in_view(self, frame: FrameTruth) -> int | None:
        """The polyp a frame holds, if enough of it is in view to expect a box."""
        return frame.polyp if frame.visible >= MIN_VISIBLE else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frame_size": list(self.frame_size),
            "polyps": self.polyps,
            "frames": [asdict(f) for f in self.frames],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=1), encoding="utf-8")


def held_out_polyps(kvasir: Path, split: Path = SPLIT) -> list[PolypImage]:
    """Validation-side Kvasir-SEG images with one polyp of 1-40 % of the image."""
    _, val = read_split(split)
    stems = {Path(k).stem for k in val if k.split("/")[-2:-1] == ["polyps"]}
    chosen = []
    for sample in load_kvasir_seg(kvasir).samples:
        if sample.path.stem not in stems or len(sample.boxes) != 1:
            continue
        b = sample.boxes[0]
        height, width = read_image(sample.path).shape[:2]
        if not 0.01 <= b.width * b.height / (width * height) <= 0.4:
            continue
        mask = kvasir / "masks" / (sample.path.stem + ".png")
        chosen.append(
            PolypImage(sample.path, (b.x0, b.y0, b.x1, b.y1), mask if mask.is_file() else None)
        )
    return chosen


def held_out_backgrounds(hyper_kvasir: Path, split: Path = SPLIT) -> list[Path]:
    """Validation-side polyp-free HyperKvasir frames."""
    _, val = read_split(split)
    keys = sorted(k for k in val if k.split("/")[-2:-1] != ["polyps"])
    return [hyper_kvasir / k for k in keys if (hyper_kvasir / k).is_file()]


@dataclass
class _Camera:
    x: float  # where the polyp's centre (the image's, for a background) lands, share of w
    y: float
    zoom: float  # relative to the source just filling the frame
    angle: float  # degrees
    gain: float
    vx: float = 0.0
    vy: float = 0.0

    @classmethod
    def start(cls, rng: np.random.Generator) -> _Camera:
        return cls(
            x=float(rng.uniform(0.15, 0.85)),
            y=float(rng.uniform(0.15, 0.85)),
            zoom=float(rng.uniform(1.0, 1.6)),
            angle=float(rng.uniform(-15, 15)),
            gain=float(rng.uniform(0.8, 1.2)),
        )

    def step(self, rng: np.random.Generator, jump: float = 0.12) -> None:
        self.vx = 0.6 * self.vx + float(rng.normal(0, jump))
        self.vy = 0.6 * self.vy + float(rng.normal(0, jump))
        self.x, self.y = self.x + self.vx, self.y + self.vy
        if not 0.0 <= self.x <= 1.0:  # bounce at the edge: partly out, never gone
            self.x, self.vx = min(max(self.x, 0.0), 1.0), -self.vx / 2
        if not 0.0 <= self.y <= 1.0:
            self.y, self.vy = min(max(self.y, 0.0), 1.0), -self.vy / 2
        self.zoom = float(np.clip(self.zoom * math.exp(rng.normal(0, 0.12)), 0.9, 2.2))
        self.angle = float(np.clip(self.angle + rng.normal(0, 5), -20, 20))
        self.gain = float(np.clip(self.gain * math.exp(rng.normal(0, 0.08)), 0.7, 1.3))


def _warp(
    image: np.ndarray, centre: tuple[float, float], cam: _Camera, size: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """The affine matrix putting ``centre`` of ``image`` where the camera says."""
    height, width = image.shape[:2]
    scale = cam.zoom * max(size[0] / width, size[1] / height)
    matrix = np.asarray(cv2.getRotationMatrix2D(centre, cam.angle, scale), np.float64)
    matrix[:, 2] += np.array([cam.x * size[0] - centre[0], cam.y * size[1] - centre[1]])
    return matrix, scale


def _render(
    image: np.ndarray,
    polyp: PolypImage | None,
    mask: np.ndarray | None,
    cam: _Camera,
    size: tuple[int, int] = FRAME_SIZE,
) -> tuple[np.ndarray, Box | None, float]:
    """One frame through the camera: the image (RGB), the polyp's box and visible share."""
    height, width = image.shape[:2]
    if polyp is None:
        centre = (width / 2, height / 2)
    else:
        x0, y0, x1, y1 = polyp.box
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    matrix, scale = _warp(image, centre, cam, size)
    frame = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    frame = np.clip(frame.astype(np.float32) * cam.gain, 0, 255).astype(np.uint8)
    if polyp is None:
        return frame, None, 0.0
    if mask is None:  # the box itself stands for the polyp
        mask = np.zeros((height, width), np.uint8)
        x0, y0, x1, y1 = (round(v) for v in polyp.box)
        mask[y0:y1, x0:x1] = 255
    warped = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST) > 127
    total = float((mask > 127).sum()) * scale * scale
    visible = min(float(warped.sum()) / total, 1.0) if total > 0 else 0.0
    if not warped.any():
        return frame, None, 0.0
    ys, xs = np.nonzero(warped)
    return (
        frame,
        (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
        visible,
    )


def _load_mask(polyp: PolypImage, shape: tuple[int, ...]) -> np.ndarray | None:
    if polyp.mask is None:
        return None
    mask = cv2.imread(str(polyp.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != shape[:2]:
        return None
    # Only the polyp inside its annotated box: a mask may hold specks elsewhere.
    x0, y0, x1, y1 = (round(v) for v in polyp.box)
    keep = np.zeros_like(mask)
    keep[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    return keep


def write_sequence(
    out_dir: str | Path,
    polyp_images: list[PolypImage],
    background_images: list[Path],
    *,
    seed: int,
    polyps: int = 3,
    fps: float = STUDY_FPS,
    size: tuple[int, int] = FRAME_SIZE,
    quality: int = 90,
) -> Truth:
    """Write one simulated sparse study to ``out_dir`` (created) as numbered JPEGs: visits
    of ``polyps`` distinct polyps drawn from ``polyp_images``, and polyp-free stretches
    of ``background_images`` between them. Seeded: the same arguments, the same files."""
    if len(polyp_images) < polyps or not background_images:
        raise ValueError(
            f"need {polyps} polyp images and a background, got {len(polyp_images)} "
            f"and {len(background_images)}"
        )
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [polyp_images[i] for i in rng.choice(len(polyp_images), polyps, replace=False)]
    truth = Truth(size, [p.path.name for p in chosen], [])
    position = int(rng.integers(1, 20))

    def emit(frame: np.ndarray, polyp: int | None, box: Box | None, visible: float) -> None:
        nonlocal position
        name = f"{position:06d}.jpg"
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out_dir / name), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        truth.frames.append(FrameTruth(position, position / fps, name, polyp, box, visible))
        position += int(rng.integers(STEP[0], STEP[1] + 1))

    def polyp_free(seconds: float) -> None:
        image = read_image(background_images[int(rng.integers(len(background_images)))])
        cam, end = _Camera.start(rng), position / fps + seconds
        while position / fps < end:
            emit(_render(image, None, None, cam, size)[0], None, None, 0.0)
            cam.step(rng)

    polyp_free(float(rng.uniform(*BETWEEN_S)))
    for index, polyp in enumerate(chosen):
        image = read_image(polyp.path)
        mask = _load_mask(polyp, image.shape)
        visits = int(rng.integers(VISITS[0], VISITS[1] + 1))
        for visit in range(visits):
            cam = _Camera.start(rng)
            for _ in range(int(rng.integers(VISIT_FRAMES[0], VISIT_FRAMES[1] + 1))):
                frame, box, visible = _render(image, polyp, mask, cam, size)
                emit(frame, index if box is not None else None, box, visible)
                cam.step(rng)
            last = visit == visits - 1
            polyp_free(float(rng.uniform(*(BETWEEN_S if last else LEAVE_S))))
    return truth
