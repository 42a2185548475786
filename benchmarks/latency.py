"""Per-frame latency, batch 1, for every model artefact and backend that runs it.

    python -m benchmarks.latency [MODEL_DIR ...] [--runs 200] [--threads N] [--json FILE]

Times the backend alone (tensors in, tensors out) and the whole frame on a real-sized
512x430 frame: for a classifier neutralise, resize, quantise, infer, dequantise; for a
detector letterbox, quantise, infer, dequantise, decode and NMS. Prints a Markdown
table; the README's latency figures come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import BackendOptions
from edge.backends.registry import BACKENDS
from edge.bundled import models_root
from edge.errors import CapsuleEdgeError
from edge.models.card import CARD_SUFFIX, load_card
from edge.models.classifier import Classifier
from edge.models.detector import Detector


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ms = np.asarray(samples_ns) / 1e6
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(card_path: Path, backend: str, runs: int, threads: int | None) -> dict[str, Any]:
    frame = np.random.default_rng(0).integers(0, 256, (430, 512, 3), dtype=np.uint8)
    options = BackendOptions(threads=threads)
    model: Classifier | Detector
    whole_frame: Callable[[], object]
    if load_card(card_path).task == "detection":
        det = model = Detector.open(card_path, backend, options)
        tensor = det.to_input(det.preprocess(frame)[0])
        whole_frame = lambda: det.detect(frame)  # noqa: E731
    else:
        clf = model = Classifier.open(card_path, backend, options)
        tensor = clf.to_input(clf.preprocess(frame)[None])
        whole_frame = lambda: clf.classify(frame)  # noqa: E731
    with model:
        for _ in range(10):
            model.backend.run([tensor])
        infer, whole = [], []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            model.backend.run([tensor])
            t1 = time.perf_counter_ns()
            whole_frame()
            t2 = time.perf_counter_ns()
            infer.append(t1 - t0)
            whole.append(t2 - t1)
        card = model.card
    p50, p95 = _percentiles(infer)
    f50, _ = _percentiles(whole)
    return {
        "model": card.raw.get("arch", card.name),
        "format": card.format,
        "precision": card.precision,
        "backend": backend,
        "infer_p50_ms": round(p50, 3),
        "infer_p95_ms": round(p95, 3),
        "frame_p50_ms": round(f50, 3),
        "size_mb": round(card.size_bytes() / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "dirs",
        nargs="*",
        type=Path,
        help="folders of models with cards (default: the bundled models)",
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cards = sorted(p for d in (args.dirs or [models_root()]) for p in d.rglob("*" + CARD_SUFFIX))
    rows = []
    seen: set[str] = set()
    for card_path in cards:
        card = load_card(card_path)
        if card.sha256 in seen:  # the same file bundled and in a run folder
            continue
        seen.add(card.sha256)
        for backend, info in BACKENDS.items():
            if card.format != info.formats[0]:  # each format on its own runtime
                continue
            try:
                rows.append(measure(card_path, backend, args.runs, args.threads))
            except CapsuleEdgeError as exc:
                print(f"skipped {card.name} on {backend}: {exc}", file=sys.stderr)
                continue
            print(f"measured {card.name} on {backend}", file=sys.stderr)
    machine = f"{_cpu_name()}, {os.cpu_count()} cores, {platform.machine()}"
    print(f"batch 1, {args.runs} runs, threads {args.threads or 'default'}, {machine}\n")
    columns = [
        "model",
        "format",
        "precision",
        "backend",
        "infer p50 ms",
        "infer p95 ms",
        "whole frame p50 ms",
        "size MB",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        cells = [
            r["model"],
            r["format"],
            r["precision"],
            r["backend"],
            f"{r['infer_p50_ms']:.2f}",
            f"{r['infer_p95_ms']:.2f}",
            f"{r['frame_p50_ms']:.2f}",
            f"{r['size_mb']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
