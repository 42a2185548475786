"""The study timeline smoother on simulated studies made of real frames.

    python -m benchmarks.timeline [--data DIR] [--split FILE] [--studies N] [--seed S] [--json FILE]

The classifier's validation frames (the bundled model's ``split.json``, never trained on)
are scored once by the bundled int8 classifier; each simulated study is then a run of
blocks of one class each (30-300 frames): a prep or polyp block, the cecum, then 4-6
blocks of the other classes. A block draws its frames from its class's scored frames in
bursts of 1-4 repeats (a video's near-duplicates: errors come in runs, not one frame at a
time), 0.5 s apart with +-25% jitter and, at 1% of frames, a gap of 2-20 s. Each study is
smoothed with the default settings, and again without its cecum block, where no cecum
should be reported. Reported: per-frame macro-F1 of the raw argmax and of the smoothed
path (all studies pooled), the distance from each true block boundary to the nearest
found one, spurious segments (found segments of another label than the true block they mostly
cover), missed blocks (true blocks that most of no found segment covers),
the cecum landmark's error, the adequate-prep share's error, and the smoother's own
time on 100,000 frames x 10 labels. Seeded: reruns give the same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundled import default_model
from edge.errors import CapsuleEdgeError
from edge.eval.dataset import read_split
from edge.eval.metrics import confusion_matrix, summarise
from edge.frames import read_image
from edge.models.classifier import Classifier
from edge.reading.timeline import build_timeline

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hyper-kvasir"
SPLIT = REPO / "edge" / "bundled" / "classifier" / "edgecnn" / "split.json"
CECUM = "cecum"


def score_frames(data: Path, split: Path, backend: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Every validation frame's class scores, by class."""
    keys = sorted(read_split(split)[1])
    with Classifier.open(default_model("classification", backend).path, backend) as clf:
        labels = list(clf.labels)
        rows: dict[str, list[np.ndarray]] = {label: [] for label in labels}
        for key in keys:
            label = Path(key).parent.name
            if label in rows:
                image = read_image(data / key)
                rows[label].append(clf.probabilities([clf.preprocess(image)])[0])
    return labels, {label: np.array(r) for label, r in rows.items() if r}


def simulate(
    pools: dict[str, np.ndarray], labels: list[str], rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """One study's blocks as (class, score rows)."""
    others = [label for label in pools if label != CECUM]
    names = [str(rng.choice(others)), CECUM]
    for _ in range(int(rng.integers(4, 7))):
        names.append(str(rng.choice([c for c in others if c != names[-1]])))
    out = []
    for name in names:
        size, rows = int(rng.integers(30, 301)), list[int]()
        while len(rows) < size:
            rows += [int(rng.integers(len(pools[name])))] * int(rng.integers(1, 5))
        out.append((name, pools[name][rows[:size]]))
    return out


def frame_times(n: int, rng: np.random.Generator) -> np.ndarray:
    steps = 0.5 * rng.uniform(0.75, 1.25, n)
    gaps = rng.random(n) < 0.01
    steps[gaps] = rng.uniform(2.0, 20.0, int(gaps.sum()))
    steps[0] = 0.0
    return np.cumsum(steps)


def measure(
    blocks: list[tuple[str, np.ndarray]], labels: list[str], rng: np.random.Generator
) -> dict[str, Any]:
    scores = np.concatenate([rows for _, rows in blocks])
    truth = np.concatenate([np.full(len(rows), labels.index(name)) for name, rows in blocks])
    block_id = np.concatenate([np.full(len(rows), i) for i, (_, rows) in enumerate(blocks)])
    times = frame_times(len(scores), rng)
    tl = build_timeline(scores, labels, times)
    true_starts = np.flatnonzero(np.diff(block_id)) + 1
    found = np.array([s.first for s in tl.segments[1:]], dtype=int)
    frames, seconds = [], []
    for b in true_starts:
        near = int(found[np.argmin(np.abs(found - b))]) if found.size else 0
        frames.append(abs(near - int(b)))
        seconds.append(abs(float(times[near] - times[b])))
    owners = [int(np.bincount(block_id[s.first : s.last + 1]).argmax()) for s in tl.segments]
    wrong = sum(s.label != blocks[o][0] for s, o in zip(tl.segments, owners, strict=True))
    cecum_at = [int(np.flatnonzero(truth == labels.index(CECUM))[0])] if CECUM in labels else []
    marks = [m for m in tl.landmarks if m.label == CECUM]
    result: dict[str, Any] = {
        "truth": truth,
        "raw": scores.argmax(axis=1),
        "smoothed": tl.path,
        "boundary_frames": frames,
        "boundary_s": seconds,
        "spurious": wrong,
        "missed": len(blocks) - len(set(owners)),
        "cecum": None,
        "smoothing": tl.smoothing,
    }
    if cecum_at and marks:
        c = cecum_at[0]
        m = marks[0]
        result["cecum"] = (abs(m.position - c), abs(m.time_s - float(times[c])))
        after = truth[c:]
        prep = [labels.index(x) for x in labels if x.startswith("bbps") or x == "impacted-stool"]
        rated = np.isin(after, prep)
        if rated.any() and tl.prep is not None and tl.prep["adequate_share"] is not None:
            true_share = float(np.mean(after[rated] == labels.index("bbps-2-3")))
            result["prep_error"] = abs(tl.prep["adequate_share"] - true_share)
    return result


def smoother_speed(repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    truth = np.repeat(rng.integers(0, 10, 200), 500)
    p = rng.dirichlet(np.ones(10), len(truth)) * 0.3
    p[np.arange(len(truth)), truth] += 0.7
    times = np.arange(len(truth)) * 0.5
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        build_timeline(p, [f"c{i}" for i in range(10)], times)
        best = min(best, time.perf_counter() - t0)
    return best


def _stats(values: list[float]) -> tuple[float, float]:
    return (float(np.median(values)), float(np.max(values))) if values else (float("nan"),) * 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DATA, help="HyperKvasir root (labeled-images/)"
    )
    parser.add_argument(
        "--split", type=Path, default=SPLIT, help="split.json: its validation frames"
    )
    parser.add_argument("--backend", default="litert")
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        t0 = time.perf_counter()
        labels, pools = score_frames(args.data, args.split, args.backend)
        scoring_s = time.perf_counter() - t0
    except CapsuleEdgeError as exc:
        print(f"timeline: {exc}", file=sys.stderr)
        return 2
    if CECUM not in pools or len(pools) < 3:
        print(f"timeline: {args.data} lacks the classes a study needs", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    runs, false_cecum = [], 0
    for _ in range(args.studies):
        blocks = simulate(pools, labels, rng)
        runs.append(measure(blocks, labels, rng))
        without = [b for b in blocks if b[0] != CECUM]
        if any(m.label == CECUM for m in _timeline(without, labels, rng).landmarks):
            false_cecum += 1
    k = len(labels)
    truth = np.concatenate([r["truth"] for r in runs])
    f1 = {
        way: summarise(confusion_matrix(truth, np.concatenate([r[way] for r in runs]), k), labels)
        for way in ("raw", "smoothed")
    }
    bf = _stats([f for r in runs for f in r["boundary_frames"]])
    bs = _stats([s for r in runs for s in r["boundary_s"]])
    cecum = [r["cecum"] for r in runs if r["cecum"] is not None]
    cf, cs = _stats([c[0] for c in cecum]), _stats([c[1] for c in cecum])
    prep = [r["prep_error"] for r in runs if "prep_error" in r]
    speed = smoother_speed()
    figures = {
        "studies": args.studies,
        "frames": len(truth),
        "validation_frames_scored": int(sum(len(p) for p in pools.values())),
        "scoring_s": round(scoring_s, 1),
        "raw_macro_f1": f1["raw"]["macro_f1"],
        "smoothed_macro_f1": f1["smoothed"]["macro_f1"],
        "raw_accuracy": f1["raw"]["accuracy"],
        "smoothed_accuracy": f1["smoothed"]["accuracy"],
        "boundaries": sum(len(r["boundary_frames"]) for r in runs),
        "boundary_error_frames": {"median": bf[0], "max": bf[1]},
        "boundary_error_s": {"median": round(bs[0], 2), "max": round(bs[1], 2)},
        "spurious_segments": sum(r["spurious"] for r in runs),
        "missed_blocks": sum(r["missed"] for r in runs),
        "cecum_found": f"{len(cecum)}/{args.studies}",
        "cecum_error_frames": {"median": cf[0], "max": cf[1]},
        "cecum_error_s": {"median": round(cs[0], 2), "max": round(cs[1], 2)},
        "false_cecum_without_cecum_block": f"{false_cecum}/{args.studies}",
        "adequate_share_abs_error": {
            "mean": round(float(np.mean(prep)), 4),
            "max": round(float(np.max(prep)), 4),
        }
        if prep
        else None,
        "smoother_100k_x10_s": round(speed, 3),
        "smoothing": runs[0]["smoothing"],
    }
    print(
        f"{args.studies} simulated studies, {figures['frames']} frames from "
        f"{figures['validation_frames_scored']} validation frames scored by the bundled "
        f"int8 classifier on {args.backend} ({scoring_s:.1f} s), seed {args.seed}; default "
        f"settings, e.g. {_settings(runs[0]['smoothing'])} in the first study\n"
    )
    print("| figure | value |\n|---|---:|")
    rows = [
        ("per-frame macro-F1, raw argmax", f"{figures['raw_macro_f1']:.3f}"),
        ("per-frame macro-F1, smoothed", f"{figures['smoothed_macro_f1']:.3f}"),
        (
            "accuracy raw / smoothed",
            f"{figures['raw_accuracy']:.3f} / {figures['smoothed_accuracy']:.3f}",
        ),
        (
            f"boundary error, frames (median / max, {figures['boundaries']} boundaries)",
            f"{bf[0]:g} / {bf[1]:g}",
        ),
        ("boundary error, s (median / max)", f"{bs[0]:.1f} / {bs[1]:.1f}"),
        (
            "spurious segments / missed blocks",
            f"{figures['spurious_segments']} / {figures['missed_blocks']}",
        ),
        ("cecum landmark found", figures["cecum_found"]),
        ("cecum error, frames (median / max)", f"{cf[0]:g} / {cf[1]:g}"),
        ("cecum error, s (median / max)", f"{cs[0]:.1f} / {cs[1]:.1f}"),
        ("cecum reported in studies without one", figures["false_cecum_without_cecum_block"]),
    ]
    if prep:
        rows.append(
            (
                "adequate-prep share, abs error (mean / max)",
                f"{np.mean(prep):.3f} / {np.max(prep):.3f}",
            )
        )
    rows.append(("smoother time, 100,000 frames x 10 labels", f"{speed * 1000:.0f} ms"))
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


def _settings(smoothing: dict[str, float]) -> str:
    return (
        f"minimum segment {smoothing['min_segment_frames']} frames, switch penalty "
        f"{smoothing['switch_penalty']:.1f} nats, landmark threshold "
        f"{smoothing['landmark_min_llr']:.1f} nats"
    )


def _timeline(
    blocks: list[tuple[str, np.ndarray]], labels: list[str], rng: np.random.Generator
) -> Any:
    scores = np.concatenate([rows for _, rows in blocks])
    return build_timeline(scores, labels, frame_times(len(scores), rng))


if __name__ == "__main__":
    sys.exit(main())
