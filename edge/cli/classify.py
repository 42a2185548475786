"""``capsule-edge classify`` and ``capsule-edge eval classify``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cli.options import add_model_args, backend_options
from edge.types import Skipped

if TYPE_CHECKING:
    from edge.models.classifier import Classifier
    from edge.preprocess import Image


def _open_classifier(args: argparse.Namespace) -> Classifier:
    from edge.bundled import resolve_model
    from edge.models.classifier import Classifier

    card = resolve_model(args.model, "classification", args.backend)
    return Classifier.open(card.path, args.backend, backend_options(args))


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


class StreamStats:
    """Counts, skips and per-frame latency of a run over many frames."""

    def __init__(self) -> None:
        self.classes: Counter[str] = Counter()
        self.latency_ms: list[float] = []
        self.skipped: list[Skipped] = []
        self.started = time.perf_counter()

    def summary(self) -> str:
        elapsed = time.perf_counter() - self.started
        n = len(self.latency_ms)
        counts = ", ".join(f"{label} {count}" for label, count in self.classes.most_common())
        p50, p95 = _percentile(self.latency_ms, 50), _percentile(self.latency_ms, 95)
        return (
            f"{n} frames classified, {len(self.skipped)} skipped, "
            f"{n / elapsed if elapsed > 0 else 0:.1f} frames/s; "
            f"latency p50 {p50:.2f} ms, p95 {p95:.2f} ms"
            + (f"\nclasses: {counts}" if counts else "")
        )


def _classify_stream(
    clf: Classifier, frames: Iterator[tuple[str, Image] | Skipped], stats: StreamStats
) -> None:
    for item in frames:
        if isinstance(item, Skipped):
            stats.skipped.append(item)
            print(f"{item.source}\tskipped\t{item.reason}")
            continue
        source, image = item
        t0 = time.perf_counter()
        top = clf.classify(image).top
        ms = (time.perf_counter() - t0) * 1000
        stats.latency_ms.append(ms)
        stats.classes[top.label] += 1
        print(f"{source}\t{top.label}\t{top.score:.3f}\t{ms:.1f} ms", flush=True)


def cmd_classify(args: argparse.Namespace) -> int:
    from edge.frames import load_frames

    stats = StreamStats()
    with _open_classifier(args) as clf:
        _classify_stream(clf, load_frames(args.paths), stats)
    print(stats.summary(), file=sys.stderr)
    return 0 if stats.latency_ms else 1


def cmd_eval_classify(args: argparse.Namespace) -> int:
    from edge.eval.classifier import evaluate_classifier

    with _open_classifier(args) as clf:
        result = evaluate_classifier(
            clf, args.data, split=args.split, blackout=args.blackout_overlays
        )
    print(result.text())
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return 0 if result.metrics["n"] else 1


def add_parsers(sub: Any, esub: Any) -> None:
    c = sub.add_parser("classify", help="classify image files or folders, one line per frame")
    c.add_argument("paths", nargs="+", help="image files or folders")
    add_model_args(c)
    c.set_defaults(func=cmd_classify)

    ec = esub.add_parser("classify", help="accuracy, macro-F1, recall, confusion matrix")
    ec.add_argument("--data", type=Path, required=True, help="class-folder dataset root")
    ec.add_argument("--split", type=Path, help="a training split.json: only its validation frames")
    ec.add_argument(
        "--blackout-overlays",
        action="store_true",
        help="black out the overlay regions in every frame first",
    )
    ec.add_argument("--json", help="write the results as JSON to this file")
    add_model_args(ec)
    ec.set_defaults(func=cmd_eval_classify)
