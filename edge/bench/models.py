"""The model rows: every bundled artefact on each available backend that runs its format,
at 1 thread and at every core, each measured in a process of its own (``edge.bench.row``).

By default each artefact runs on the backend of its own format (LiteRT for .tflite,
OpenVINO for its IR, ONNX Runtime for .onnx); ``every_backend`` adds OpenVINO running the
LiteRT and ONNX files too. A backend that is not installed gives a skipped row that says
what brings it, and its artefact runs on one installed that opens it (an fp32 .onnx on
OpenVINO in the lean install); a row whose process fails is kept with its error.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.backends.registry import BACKENDS
from edge.bench import macs
from edge.bench.machine import available_backends
from edge.bench.row import RowSpec
from edge.bench.validation import find
from edge.bundled import base_name, bundled_cards
from edge.errors import CapsuleEdgeError
from edge.models.card import ModelCard

ROW_TIMEOUT_S = 900  # a row that takes longer has hung


@dataclass(frozen=True)
class Planned:
    card: ModelCard
    backend: str
    threads: int
    validation: dict[str, Any] | None
    skipped: str | None = None  # why the row is not measured

    def key(self) -> dict[str, Any]:
        return {
            "model": base_name(self.card),
            "task": self.card.task,
            "precision": self.card.precision,
            "format": self.card.format,
            "backend": self.backend,
            "threads": self.threads,
        }


def plan(
    root: Path | None,
    data_root: Path,
    threads: list[int],
    every_backend: bool = False,
    accuracy: bool = True,
) -> list[Planned]:
    have = available_backends()
    rows = []
    for card in bundled_cards(root):
        validation, _ = find(card, data_root) if accuracy else (None, None)
        v = validation.to_json() if validation is not None else None
        chosen = [
            b
            for b, info in BACKENDS.items()
            if card.format == info.formats[0] or (every_backend and card.format in info.formats)
        ]
        for backend in list(chosen):
            if have[backend]:
                continue
            # its own backend is not installed: say so, and run it on one that opens it
            # (OpenVINO reads ONNX and LiteRT files), so each model keeps its fp32 row
            rows += [
                Planned(
                    card, backend, n, v, f"{backend} not installed: {BACKENDS[backend].install}"
                )
                for n in threads
            ]
            chosen.remove(backend)
            other = next(
                (b for b, i in BACKENDS.items() if have[b] and card.format in i.formats), None
            )
            if other is not None and other not in chosen:
                chosen.append(other)
        rows += [Planned(card, backend, n, v) for backend in chosen for n in threads]
    return rows


def _child(spec: RowSpec) -> dict[str, Any]:
    return _run([sys.executable, "-m", "edge.bench.row", json.dumps(asdict(spec))])


def _run(command: list[str]) -> dict[str, Any]:
    """A row process's JSON line, or its error."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=ROW_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {ROW_TIMEOUT_S} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(
    planned: list[Planned],
    runs: int,
    warmup: int,
    frame: Path | None,
    progress: Callable[[Planned], None] | None = None,
) -> list[dict[str, Any]]:
    """Each planned row measured (or skipped), with the artefact's size and MACs; the
    accuracy is measured once per artefact and backend and shared by its thread rows."""
    rows: list[dict[str, Any]] = []
    counted: dict[str, int | str] = {}
    accuracy: dict[tuple[str, str], dict[str, Any]] = {}
    for p in planned:
        if progress is not None:
            progress(p)
        row = p.key() | {"size_mb": round(p.card.size_bytes() / 1e6, 2)}
        path = str(p.card.model_path)
        if path not in counted:
            try:
                counted[path] = macs.count(p.card.model_path)
            except CapsuleEdgeError as exc:
                counted[path] = str(exc)
        if isinstance(counted[path], int):
            row["gmacs"] = round(int(counted[path]) / 1e9, 4)
        if p.skipped:
            rows.append(row | {"skipped": p.skipped})
            continue
        shared = accuracy.get((path, p.backend))
        spec = RowSpec(
            card=str(p.card.path),
            backend=p.backend,
            threads=p.threads,
            runs=runs,
            warmup=warmup,
            frame=str(frame) if frame else None,
            validation=p.validation if shared is None else None,
        )
        result = _child(spec)
        if "error" not in result and p.validation is not None:
            if shared is None:
                shared = {k: result[k] for k in ACCURACY_KEYS if k in result}
                accuracy[(path, p.backend)] = shared
            result |= shared
        rows.append(row | result)
    return rows


def torch_rows(
    python: Path,
    root: Path | None,
    threads: list[int],
    runs: int,
    warmup: int,
    frame: Path | None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """The PyTorch reference of each bundled detector (yolov5's own model and NMS, fp32),
    measured by ``python`` (an environment with torch and yolov5: the detector-train one)."""
    rows = []
    for card in bundled_cards(root):
        if card.task != "detection" or card.format != "onnx":  # the fp32 export: its weights
            continue
        for n in threads:
            if progress is not None:
                progress(f"{base_name(card)} pytorch x{n}")
            spec = {
                "onnx": str(card.model_path),
                "img": card.input_size,
                "threads": n,
                "runs": runs,
                "warmup": warmup,
                "frame": str(frame) if frame else None,
            }
            key: dict[str, Any] = {"model": base_name(card), "task": card.task}
            key |= {"precision": "fp32", "format": "pytorch", "backend": "torch", "threads": n}
            with contextlib.suppress(CapsuleEdgeError):  # the same graph as the export's
                key["gmacs"] = round(macs.count(card.model_path) / 1e9, 4)
            rows.append(
                key | _run([str(python), "-m", "convert.torch_reference", json.dumps(spec)])
            )
    return rows


def speedups(rows: list[dict[str, Any]]) -> None:
    """Each row's p50 against the PyTorch reference of its model at its threads, in place."""
    reference = {
        (r["model"], r["threads"]): r["p50_ms"]
        for r in rows
        if r.get("backend") == "torch" and "p50_ms" in r
    }
    for r in rows:
        ref = reference.get((r.get("model"), r.get("threads")))
        if ref and "p50_ms" in r and r.get("backend") != "torch":
            r["speedup_vs_torch"] = round(ref / r["p50_ms"], 2)


ACCURACY_KEYS = ("accuracy", "macro_f1", "map50", "map50_95", "frame_macro_f1", "eval_frames")
