"""One bench row, measured in a process of its own: ``python -m edge.bench.row SPEC``.

A process per row so that each row's peak memory is its own (``ru_maxrss`` only ever
grows) and no row inherits another's warm caches or threads. SPEC is a JSON object
(``RowSpec``); the row is printed as one JSON line on stdout, or ``{"error": ...}``.

Timed on one real-sized frame (a validation frame when there is data, else a 512x430
noise frame), already decoded: "whole frame" is what the runtime does per frame after
decoding (for a classifier neutralise, resize, quantise, infer, dequantise; for a
detector field of view, letterbox, quantise, infer, dequantise, decode, NMS); "infer"
the backend call alone on the prepared tensor.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import BackendOptions
from edge.bench.timing import time_calls
from edge.bench.validation import ValidationSet
from edge.errors import CapsuleEdgeError
from edge.models.card import load_card
from edge.models.classifier import Classifier
from edge.models.detector import Detector


@dataclass(frozen=True)
class RowSpec:
    card: str  # the model card's path
    backend: str
    threads: int
    runs: int
    warmup: int
    frame: str | None = None  # an image file to time on; None: noise
    validation: dict[str, Any] | None = None  # a ValidationSet's fields: measure accuracy


def _frame(path: str | None) -> np.ndarray:
    if path:
        from edge.frames import read_image

        return read_image(Path(path))
    return np.random.default_rng(0).integers(0, 256, (430, 512, 3), dtype=np.uint8)


def _accuracy(model: Classifier | Detector, v: ValidationSet) -> dict[str, Any]:
    if isinstance(model, Classifier):
        from edge.eval.classifier import evaluate_classifier

        m = evaluate_classifier(model, v.data, v.split).metrics
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "eval_frames": m["n"]}
    from edge.eval.detector import evaluate_detector

    s = evaluate_detector(model, v.data, v.split, v.background).summary
    return {
        "map50": s.map50,
        "map50_95": s.map50_95,
        "frame_macro_f1": s.frame_macro_f1,
        "eval_frames": s.n_images + s.n_background,
    }


def measure(spec: RowSpec) -> dict[str, Any]:
    card = load_card(Path(spec.card))
    frame = _frame(spec.frame)
    options = BackendOptions(threads=spec.threads)
    start = time.perf_counter()
    model: Classifier | Detector
    if card.task == "detection":
        model = Detector.open(Path(spec.card), spec.backend, options, warm=False)
    else:
        model = Classifier.open(Path(spec.card), spec.backend, options, warm=False)
    load_s = time.perf_counter() - start
    with model:
        if isinstance(model, Detector):
            tensor = model.to_input(model.preprocess(frame)[0])
            whole = time_calls(lambda: model.detect(frame), spec.runs, spec.warmup)
        else:
            tensor = model.to_input(model.preprocess(frame)[None])
            whole = time_calls(lambda: model.classify(frame), spec.runs, spec.warmup)
        infer = time_calls(lambda: model.backend.run([tensor]), spec.runs, spec.warmup)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the eval's frames
        row: dict[str, Any] = {
            "load_s": round(load_s, 4),
            "first_ms": round(whole.first_ms, 3),
            **{k: round(getattr(whole, k), 3) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
            "fps": round(whole.fps, 2),
            "infer_p50_ms": round(infer.p50_ms, 3),
            "infer_p99_ms": round(infer.p99_ms, 3),
            "runs": spec.runs,
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "device": model.backend.device,
            "fallback": model.backend.fallback,
        }
        if spec.validation is not None:
            v = ValidationSet.from_json(spec.validation)
            row |= {
                k: round(x, 4) if isinstance(x, float) else x
                for k, x in _accuracy(model, v).items()
            }
    return row


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        spec = RowSpec(**json.loads(args[0]))
        row = measure(spec)
    except (CapsuleEdgeError, OSError, ValueError, TypeError, IndexError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
