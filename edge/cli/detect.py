"""``capsule-edge detect`` and ``capsule-edge eval detect``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edge.annotate import (
    Progress,
    VideoReader,
    VideoWriter,
    draw,
    is_video_file,
    write_image,
)
from edge.bundled import resolve_model
from edge.cli.options import add_model_args, backend_options
from edge.errors import BadInputError
from edge.frames import decode_files, expand_paths
from edge.models.detector import CONF_THRESHOLD, IOU_THRESHOLD, Detector
from edge.types import Detections, Skipped

DEFAULT_VIDEO_DIR = Path("detections")


def open_detector(args: argparse.Namespace) -> Detector:
    card = resolve_model(args.model, "detection", args.backend)
    return Detector.open(
        card.path,
        args.backend,
        backend_options(args),
        conf_threshold=getattr(args, "conf", CONF_THRESHOLD),
        iou_threshold=getattr(args, "iou", IOU_THRESHOLD),
    )


def _line(source: str, found: Detections, ms: float) -> str:
    boxes = " ".join(
        f"{d.label}:{d.score:.2f}@{d.box.x0:.0f},{d.box.y0:.0f},{d.box.x1:.0f},{d.box.y1:.0f}"
        for d in found.items
    )
    return f"{source}\t{len(found)}\t{ms:.1f} ms\t{boxes}".rstrip()


def _detect_video(det: Detector, path: Path, save_dir: Path, totals: dict[str, int]) -> None:
    reader = VideoReader(path)
    out = save_dir / f"{path.stem}.detections.mp4"
    writer = VideoWriter(out, reader.info.fps)
    progress = Progress(path.name, reader.info.frames)
    try:
        for index, frame in enumerate(reader):
            t0 = time.perf_counter()
            found = det.detect(frame)
            ms = (time.perf_counter() - t0) * 1000
            writer.write(draw(frame, found))
            totals["frames"] += 1
            totals["detections"] += len(found)
            if found.items:
                print(_line(f"{path}#{index}", found, ms), flush=True)
            progress.update(index + 1)
    finally:
        progress.finish()
        reader.close()
        writer.close()
    if writer.frames == 0:
        raise BadInputError(f"{path}: no frame could be decoded")
    short = reader.info.frames and writer.frames < reader.info.frames
    note = f" (the container announced {reader.info.frames})" if short else ""
    print(f"{path}: {writer.frames} frames{note} -> {out}", file=sys.stderr)


def cmd_detect(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    videos = [p for p in paths if is_video_file(p)]
    others = [p for p in paths if not is_video_file(p)]
    save_dir: Path | None = args.save_dir
    if videos and save_dir is None:
        save_dir = DEFAULT_VIDEO_DIR
        print(f"annotated videos go to {save_dir}/ (--save-dir to choose)", file=sys.stderr)
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    totals = {"frames": 0, "detections": 0}
    skipped: list[Skipped] = []
    with open_detector(args) as det:
        for item in decode_files(expand_paths(others)):
            if isinstance(item, Skipped):
                skipped.append(item)
                print(f"{item.source}\tskipped\t{item.reason}")
                continue
            source, image = item
            t0 = time.perf_counter()
            found = det.detect(image)
            ms = (time.perf_counter() - t0) * 1000
            totals["frames"] += 1
            totals["detections"] += len(found)
            print(_line(source, found, ms), flush=True)
            if save_dir is not None:
                write_image(save_dir / f"{Path(source).stem}.detections.jpg", draw(image, found))
        for video in videos:
            try:
                _detect_video(det, video, save_dir or DEFAULT_VIDEO_DIR, totals)
            except BadInputError as exc:
                skipped.append(Skipped.from_error(video, exc))
                print(f"{video}\tskipped\t{skipped[-1].reason}")
    print(
        f"{totals['frames']} frames, {totals['detections']} detections, "
        f"{len(skipped)} inputs skipped",
        file=sys.stderr,
    )
    return 0 if totals["frames"] else 1


def cmd_eval_detect(args: argparse.Namespace) -> int:
    from edge.eval.detector import evaluate_detector

    with open_detector(args) as det:
        result = evaluate_detector(
            det, args.data, args.split, args.background, conf_threshold=args.conf
        )
    s = result.summary
    fp = s.fp_frames_per_100_background
    aside = len(result.set_aside)
    print(
        f"{s.n_images} frames with boxes ({s.n_boxes} boxes), {s.n_background} without, "
        f"{len(result.skipped)} skipped"
        + (f", {aside} set aside (images whose every box is unusable)" if aside else "")
        + "\n"
        f"mAP@0.5 {s.map50:.3f}  mAP@0.5:0.95 {s.map50_95:.3f}  "
        f"precision {s.precision:.3f}  recall {s.recall:.3f}  (at confidence {args.conf})\n"
        f"frames with a finding vs with a box: accuracy {s.frame_accuracy:.3f}  "
        f"macro-F1 {s.frame_macro_f1:.3f}"
        + (f"\nfalse-alarm frames per 100 frames without a box: {fp:.1f}" if fp is not None else "")
    )
    for skip in result.skipped:
        print(f"skipped {skip}", file=sys.stderr)
    for skip in result.set_aside:
        print(f"{skip}", file=sys.stderr)
    if args.json:
        doc: dict[str, Any] = {
            **s.as_dict(),
            "model": str(det.card.model_path),
            "backend": args.backend,
            "skipped": len(result.skipped),
            "set_aside": len(result.set_aside),
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0 if s.n_images else 1


def add_parsers(sub: Any, evaluate: Any) -> None:
    """Register ``detect`` on the main subparsers and ``detect`` under ``eval``."""
    d = sub.add_parser("detect", help="find polyps in images, folders and videos")
    d.add_argument("paths", nargs="+", help="image files, folders or video files")
    d.add_argument("--save-dir", type=Path, help="write annotated images and videos here")
    d.add_argument("--conf", type=float, default=CONF_THRESHOLD, help="confidence threshold")
    d.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="NMS IoU threshold")
    add_model_args(d)
    d.set_defaults(func=cmd_detect)

    e = evaluate.add_parser("detect", help="mAP, precision, recall, false alarms")
    e.add_argument("--data", type=Path, required=True, help="Kvasir-SEG (or YOLO) folder")
    e.add_argument("--split", type=Path, help="a split.json: only its validation frames")
    e.add_argument(
        "--background", type=Path, help="HyperKvasir tree: non-polyp classes as polyp-free frames"
    )
    e.add_argument(
        "--conf", type=float, default=CONF_THRESHOLD, help="operating point for P, R, false alarms"
    )
    e.add_argument("--json", help="write the results as JSON to this file")
    add_model_args(e)
    e.set_defaults(func=cmd_eval_detect)
