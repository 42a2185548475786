"""capsule-edge: the on-device runtime's command line."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.bundled import bundled_cards, default_model
from edge.cli_options import add_model_args, backend_options
from edge.detect_cli import add_parsers as add_detect_parsers
from edge.errors import CapsuleEdgeError
from edge.frames import load_frames
from edge.models.card import ModelCard, load_card
from edge.models.classifier import Classifier
from edge.preprocess import Image
from edge.runtime.cli import add_parsers as add_runtime_parsers
from edge.study.cli import add_parsers as add_study_parsers
from edge.types import Skipped
from firmware_bridge.cli import add_parsers as add_simulate_parsers


def _open_classifier(args: argparse.Namespace) -> Classifier:
    card: ModelCard = (
        load_card(args.model) if args.model else default_model("classification", args.backend)
    )
    return Classifier.open(card.path, args.backend, backend_options(args))


def _percentile(values: list[float], q: float) -> float:
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
    stats = StreamStats()
    with _open_classifier(args) as clf:
        _classify_stream(clf, load_frames(args.paths), stats)
    print(stats.summary(), file=sys.stderr)
    return 0 if stats.latency_ms else 1


def cmd_eval_classify(args: argparse.Namespace) -> int:
    from edge.evaluate import evaluate_classifier

    with _open_classifier(args) as clf:
        result = evaluate_classifier(
            clf, args.data, split=args.split, blackout=args.blackout_overlays
        )
    print(result.text())
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return 0 if result.metrics["n"] else 1


def cmd_models(args: argparse.Namespace) -> int:
    cards = bundled_cards()
    print(f"{'name':<28}{'task':<16}{'format':<10}{'precision':<11}{'size':>10}  sha256")
    for card in cards:
        size = card.size_bytes()
        print(
            f"{card.name:<28}{card.task:<16}{card.format:<10}{card.precision:<11}"
            f"{size / 1e6:>8.2f}MB  {card.sha256}"
        )
    if not cards:
        print("no bundled models", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capsule-edge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("classify", help="classify image files or folders, one line per frame")
    c.add_argument("paths", nargs="+", help="image files or folders")
    add_model_args(c)
    c.set_defaults(func=cmd_classify)

    e = sub.add_parser("eval", help="measure a model on labelled data")
    esub = e.add_subparsers(dest="task", required=True)
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

    add_detect_parsers(sub, esub)
    add_simulate_parsers(sub)
    add_runtime_parsers(sub)
    add_study_parsers(sub)

    m = sub.add_parser("models", help="list the bundled models")
    m.set_defaults(func=cmd_models)
    return parser


def _keep_odd_names(*streams: object) -> None:
    """Print a file name that is not UTF-8 as its own bytes (as ls does) instead of
    failing on it with UnicodeEncodeError, whatever the locale."""
    for stream in streams:
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _keep_odd_names(sys.stdout, sys.stderr)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CapsuleEdgeError, ValueError, OSError) as exc:
        print(f"capsule-edge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
