"""Findings as events, measured: how many events the tracker makes per real polyp.

Builds ``--sequences`` simulated sparse studies from held-out real frames
(``benchmarks.polyp_sequences``: distinct Kvasir-SEG polyps under camera motion, leaving
the view and coming back elsewhere, polyp-free HyperKvasir stretches between), runs the
bundled int8 detector on every frame, feeds the detections to the tracker and matches
its events to the truth. Reports, per association:

- fragmentation: events per polyp found (a published polyp count on full colonoscopies
  reached 6.3 at < 5 % false positives; 1 is the goal);
- polyps missed (no event of theirs), beside those detectable at all (a box on them in at
  least ``confirm_frames`` frames), and merged events (one event over two polyps: the
  second holds at least 2 of its boxes); an event belongs to the polyp most of its boxes
  lie on;
- false events per sequence (events with no box on a polyp; mostly a false positive of
  the detector that persists over a polyp-free stretch).

``appearance`` is the tracker as shipped; ``position`` drops the appearance term (so no
relaxed gate after a gap either); ``iou`` links by overlap alone, the usual baseline.

    python -m benchmarks.events [--json FILE] [--sequences N] [--seed S] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.polyp_sequences import (
    SPLIT,
    Truth,
    held_out_backgrounds,
    held_out_polyps,
    write_sequence,
)
from edge.bundled import default_model
from edge.frames import read_image
from edge.models.detector import Detector
from edge.reading.appearance import Box, box_feature
from edge.reading.events import Detection, EventTracker, TrackerSettings, iou

VARIANTS = ("appearance", "position", "iou")
POLYPS_PER_SEQUENCE = 3
MATCH_IOU = 0.2  # an event's box lies on a true polyp at this IoU, or with its centre inside


@dataclass
class Frame:
    position: int
    time_s: float
    detections: list[Detection]


@dataclass
class Score:
    polyps: int = 0
    detectable: int = 0  # polyps with a box on them in at least confirm_frames frames
    found: int = 0
    events_on_polyps: int = 0
    merged: int = 0
    false_events: int = 0
    unconfirmed: int = 0

    def add(self, other: Score) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def _on(box: Box, truth: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]
    return inside or iou(box, truth) >= MATCH_IOU


def detect_sequence(det: Detector, folder: Path, truth: Truth) -> tuple[list[Frame], Counter[str]]:
    frames, counts = [], Counter[str]()
    for ft in truth.frames:
        image = read_image(folder / ft.name)  # RGB
        found = det.detect(image)
        dets = [
            Detection(
                (d.box.x0, d.box.y0, d.box.x1, d.box.y1),
                d.score,
                d.label,
                box_feature(image, (d.box.x0, d.box.y0, d.box.x1, d.box.y1), rgb=True),
            )
            for d in found.items
            if d.box.width > 0 and d.box.height > 0
        ]
        frames.append(Frame(ft.position, ft.time_s, dets))
        polyp = truth.in_view(ft)
        if ft.polyp is None:
            counts["polyp_free_frames"] += 1
            counts["boxes_on_polyp_free_frames"] += len(dets)
        elif polyp is not None and ft.box is not None:
            counts["polyp_frames"] += 1
            counts["polyp_frames_found"] += any(_on(d.box, ft.box) for d in dets)
    return frames, counts


def score(frames: list[Frame], truth: Truth, settings: TrackerSettings) -> Score:
    tracker = EventTracker(settings)
    width, height = truth.frame_size
    for f in frames:
        tracker.update(f.position, f.time_s, f.detections, (width, height))
    events = tracker.finish()
    by_position = {ft.position: ft for ft in truth.frames}
    present = {truth.in_view(ft) for ft in truth.frames} - {None}
    boxed: Counter[int] = Counter()
    for f in frames:
        ft = by_position[f.position]
        box = ft.box
        if ft.polyp is not None and box is not None:
            boxed[ft.polyp] += any(
                _on(d.box, box) for d in f.detections if d.score >= settings.min_score
            )
    result = Score(
        polyps=len(present),
        detectable=sum(n >= settings.confirm_frames for n in boxed.values()),
        unconfirmed=tracker.unconfirmed,
    )
    per_polyp: Counter[int] = Counter()
    for event in events:
        votes: Counter[int] = Counter()
        for position, box in event.boxes.items():
            ft = by_position[position]
            if ft.polyp is not None and ft.box is not None and _on(box, ft.box):
                votes[ft.polyp] += 1
        if not votes:
            result.false_events += 1
            continue
        ranked = votes.most_common()
        per_polyp[ranked[0][0]] += 1
        result.merged += len(ranked) > 1 and ranked[1][1] >= 2
    result.found = len(per_polyp)
    result.events_on_polyps = sum(per_polyp.values())
    return result


def summarise(total: Score, sequences: int) -> dict[str, Any]:
    return {
        **asdict(total),
        "fragmentation": total.events_on_polyps / total.found if total.found else None,
        "missed": total.polyps - total.found,
        "false_events_per_sequence": total.false_events / sequences,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sequences", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--model", type=Path, help="a detector model or card (default: bundled int8)")
    p.add_argument("--backend", default="litert")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if args.sequences < 1:
        p.error("--sequences must be at least 1")
    kvasir, hyper = args.data / "kvasir-seg", args.data / "hyper-kvasir"
    if not kvasir.is_dir() or not hyper.is_dir():
        print(f"{args.data}: needs kvasir-seg/ and hyper-kvasir/", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    polyps, backgrounds = held_out_polyps(kvasir), held_out_backgrounds(hyper)
    rng = np.random.default_rng(args.seed)
    order = [polyps[i] for i in rng.permutation(len(polyps))]
    model = args.model or default_model("detection", args.backend).path
    t0 = time.perf_counter()
    totals = {v: Score() for v in VARIANTS}
    counts: Counter[str] = Counter()
    n_frames = 0
    with Detector.open(model, args.backend) as det, tempfile.TemporaryDirectory() as tmp:
        for k in range(args.sequences):
            start = (k * POLYPS_PER_SEQUENCE) % max(len(order) - POLYPS_PER_SEQUENCE, 1)
            pool = order[start : start + POLYPS_PER_SEQUENCE]
            folder = Path(tmp) / f"sequence-{k:03d}"
            truth = write_sequence(folder, pool, backgrounds, seed=args.seed * 1000 + k)
            frames, c = detect_sequence(det, folder, truth)
            counts.update(c)
            n_frames += len(frames)
            for variant in VARIANTS:
                settings = replace(TrackerSettings(), association=variant)
                totals[variant].add(score(frames, truth, settings))
    seconds = time.perf_counter() - t0
    report = {
        "sequences": args.sequences,
        "frames": n_frames,
        "seed": args.seed,
        "model": str(model),
        "polyp_images": f"{len(polyps)} held-out Kvasir-SEG images ({SPLIT.name} validation)",
        "detector": {
            "polyp_frame_recall": counts["polyp_frames_found"] / max(counts["polyp_frames"], 1),
            "boxes_per_100_polyp_free_frames": 100
            * counts["boxes_on_polyp_free_frames"]
            / max(counts["polyp_free_frames"], 1),
        },
        "settings": asdict(TrackerSettings()),
        "variants": {v: summarise(totals[v], args.sequences) for v in VARIANTS},
        "seconds": round(seconds, 1),
    }
    d = report["detector"]
    print(
        f"{args.sequences} sequences, {n_frames} frames, {seconds:.0f} s; detector: "
        f"{d['polyp_frame_recall']:.3f} of polyp frames found, "
        f"{d['boxes_per_100_polyp_free_frames']:.1f} boxes per 100 polyp-free frames"
    )
    print(
        "| association | polyps | detectable | found | missed | events on polyps "
        "| fragmentation | merged | false events/seq | unconfirmed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant, s in report["variants"].items():
        frag = "-" if s["fragmentation"] is None else f"{s['fragmentation']:.2f}"
        print(
            f"| {variant} | {s['polyps']} | {s['detectable']} | {s['found']} | {s['missed']} | "
            f"{s['events_on_polyps']} | {frag} | {s['merged']} | "
            f"{s['false_events_per_sequence']:.2f} | {s['unconfirmed']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
