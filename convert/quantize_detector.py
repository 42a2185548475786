"""Second half of the detector conversion, in the convert profile (tensorflow, no torch).

From ``<run>/export`` (``convert.export_detector``) write ``<run>/artefacts``:

==============  ==========  =======  ==============================================
file            backend     layout   made by
==============  ==========  =======  ==============================================
fp32.onnx       onnxruntime decoded  yolov5's Detect, as its own ONNX export
fp32.xml        openvino    raw      ``ov.convert_model(raw.onnx)``
int8.xml        openvino    raw      NNCF post-training quantisation of fp32.xml
fp32.tflite     litert      raw      Keras port (``convert.yolov5_keras``)
int8.tflite     litert      raw      full-integer LiteRT converter, int8 in and out
==============  ==========  =======  ==============================================

Calibration uses letterboxed training frames. Every artefact is evaluated through the
edge ``Detector`` on the validation split; each card records mAP, precision, recall,
false alarms on polyp-free frames and, for int8, its fp32 reference and how well its
boxes match fp32's. Conversion fails when int8 loses more than ``tolerance`` points of
mAP@0.5 against fp32 on the same backend, or fewer than ``min_box_parity`` of matched
boxes overlap fp32's at IoU >= 0.9.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BadInputError
from edge.eval.detection_metrics import PARITY_IOU, box_parity
from edge.eval.detector import DetectionEval, evaluate_detector, iter_images, labelled_frames
from edge.fov import FieldOfView
from edge.models.card import write_card
from edge.models.detector import Detector
from edge.preprocess import FOV_LETTERBOX_ID, LETTERBOX_ID, letterbox

log = logging.getLogger(__name__)

# file -> (format, precision, backend, layout)
ARTEFACTS = {
    "fp32.onnx": ("onnx", "fp32", "onnxruntime", "decoded"),
    "fp32.xml": ("openvino", "fp32", "openvino", "raw"),
    "int8.xml": ("openvino", "int8", "openvino", "raw"),
    "fp32.tflite": ("tflite", "fp32", "litert", "raw"),
    "int8.tflite": ("tflite", "int8", "litert", "raw"),
}
KERAS_PORT_TOLERANCE = 1e-3  # largest sigmoid difference between Keras port and ONNX


@dataclass
class DetectorReport:
    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None

    @property
    def passed(self) -> bool:
        return self.failure is None

    def table(self) -> str:
        head = f"{'artefact':<13}{'backend':<13}{'mAP50':>7}{'mAP50-95':>10}{'P':>7}{'R':>7}"
        lines = [head + f"{'FP/100 bg':>11}{'box parity':>12}"]
        for r in self.rows:
            e = r["evaluation"]
            fp = e["fp_frames_per_100_background"]
            parity = r.get("int8_check", {}).get("box_parity")
            lines.append(
                f"{r['file']:<13}{r['backend']:<13}{e['map50']:>7.3f}{e['map50_95']:>10.3f}"
                f"{e['precision']:>7.3f}{e['recall']:>7.3f}"
                f"{'-' if fp is None else f'{fp:.1f}':>11}"
                f"{'-' if parity is None else f'{parity:.3f}':>12}"
            )
        lines.append(f"artefacts and cards in {self.out}")
        return "\n".join(lines)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path.parent}: {path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable ({exc})") from None


def _calibration(
    data: Path,
    split: Path,
    background: Path | None,
    size: int,
    count: int,
    seed: int,
    fov: FieldOfView | None,
) -> np.ndarray:
    frames, skipped = labelled_frames(data, split, background, side="train")
    random.Random(seed).shuffle(frames)
    chosen = [
        letterbox(fov.apply(image) if fov else image, size)[0]
        for _, image in iter_images(frames[:count], skipped)
    ]
    if not chosen:
        raise BadInputError(f"{data}: no training frames could be read for calibration")
    return np.stack(chosen).astype(np.float32)


def _export_all(export: Path, out: Path, calib: np.ndarray, size: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import nncf
    import onnxruntime as ort
    import openvino as ov

    from convert.tflite import write_tflite
    from convert.yolov5_keras import build

    meta = _read_json(export / "detector.json")
    shutil.copyfile(export / "fp32.onnx", out / "fp32.onnx")

    ov_model = ov.convert_model(str(export / "raw.onnx"))
    ov.save_model(ov_model, str(out / "fp32.xml"), compress_to_fp16=False)
    calibration = nncf.Dataset(list(calib), lambda f: f[None])
    # The Detect convs stay in float (three 1x1 convs, a fraction of a percent of the
    # work): their outputs become box sizes, where an int8 step is pixels.
    detect = len(meta["yaml"]["backbone"]) + len(meta["yaml"]["head"]) - 1
    # MIXED: asymmetric activations. SiLU outputs barely go below zero, so a symmetric
    # range wastes half of int8 on them. Measured on the epoch-55 checkpoint: box
    # parity 0.939 -> 0.978, mAP@0.5 0.816 -> 0.825 (fp32 0.824).
    quantized = nncf.quantize(
        ov_model,
        calibration,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calib),
        ignored_scope=nncf.IgnoredScope(patterns=[rf".*model\.{detect}/m\.\d+/Conv"]),
    )
    ov.save_model(quantized, str(out / "int8.xml"), compress_to_fp16=False)

    weights = dict(np.load(export / "weights.npz"))
    model = build(meta["yaml"], weights, size)
    # The port must be the trained model, not an approximation of it.
    reference = ort.InferenceSession(str(export / "raw.onnx"), providers=["CPUExecutionProvider"])
    probe = calib[:4]
    for frame in probe:
        ported = [np.asarray(t) for t in model(frame[None])]
        expected = reference.run(None, {reference.get_inputs()[0].name: frame[None]})
        worst = max(float(np.abs(a - b).max()) for a, b in zip(ported, expected, strict=True))
        if worst > KERAS_PORT_TOLERANCE:
            raise RuntimeError(f"Keras port differs from raw.onnx by {worst:.2e}")

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        model.export(str(saved), verbose=False)
        write_tflite(saved, calib, out, ranges="mean")


def card_fields(
    file: str,
    name: str,
    meta: dict[str, Any],
    training: dict[str, Any],
    fov: FieldOfView | None = None,
) -> dict[str, Any]:
    """Everything a detector card says but its evaluation."""
    fmt, precision, _, layout = ARTEFACTS[file]
    size = int(meta["input_size"])
    preprocessing: dict[str, Any] = {
        "id": LETTERBOX_ID,
        "overlays": "kept: the detector sees whole frames (see convert/detector_data.py)",
    }
    if fov is not None:
        preprocessing = {
            "id": FOV_LETTERBOX_ID,
            "fov": fov.to_card(),
            "outside_fov": "set to 0 before the letterbox, as in training (edge/fov.py)",
        }
    return {
        "task": "detection",
        "name": name,
        "format": fmt,
        "precision": precision,
        "labels": meta["names"],
        "input": {
            "shape": [1, size, size, 3],
            "layout": "NHWC",
            "dtype": "int8" if file == "int8.tflite" else "float32",
            "range": "RGB 0-255",
        },
        "preprocessing": preprocessing,
        "detector": {
            "layout": layout,
            "strides": meta["strides"],
            "anchors": meta["anchors"],
            "outputs": (
                "[1, N, 5 + nc]: x, y, w, h (input pixels), objectness, class scores"
                if layout == "decoded"
                else "per stride [1, H, W, anchors x (5 + nc)], sigmoid applied"
            ),
        },
        "training": training,
    }


def _training_summary(run: Path, meta: dict[str, Any]) -> dict[str, Any]:
    config = run.parent / f"{run.name}.config.json"
    given = _read_json(config) if config.is_file() else {}
    arch = given.get("model", "yolov5s")
    flips = ", flipud 0.5" if given.get("fov") else ""
    start = f"from {given['init']}" if given.get("init") else "from scratch"
    extra = "" if given.get("augment", "yolov5") == "yolov5" else f", {given['augment']} shifts"
    hyp = "".join(f", {k} {v}" for k, v in (given.get("hyp") or {}).items())
    summary: dict[str, Any] = {
        "recipe": f"yolov5 7.0.14 train.py, {arch}.yaml {start}, hyp.scratch-low{flips}{hyp}"
        f"{extra}",
        "input_size": meta["input_size"],
    }
    if given:
        summary["config"] = given
    results = run / "results.csv"
    if results.is_file():
        with results.open(encoding="utf-8") as f:
            rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
        if rows:
            best = max(rows, key=lambda r: float(r["metrics/mAP_0.5"]))
            summary["epochs"] = len(rows)
            summary["best_epoch"] = int(best["epoch"])
            summary["yolov5_val_best"] = {
                "map50": float(best["metrics/mAP_0.5"]),
                "map50_95": float(best["metrics/mAP_0.5:0.95"]),
            }
    return summary


def quantize_detector(
    run: Path,
    data: Path,
    split: Path,
    background: Path | None = None,
    name: str = "yolov5s-256",
    tolerance: float = 1.5,
    min_box_parity: float = 0.95,
    calibration: int = 300,
    seed: int = 0,
) -> DetectorReport:
    export = run / "export"
    meta = _read_json(export / "detector.json")
    size = int(meta["input_size"])
    out = run / "artefacts"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fov_file = run / "fov.json"
    fov = FieldOfView.from_card(_read_json(fov_file), fov_file) if fov_file.is_file() else None
    calib = _calibration(data, split, background, size, calibration, seed, fov)
    started = time.time()
    _export_all(export, out, calib, size)
    log.info("exported in %.0f s", time.time() - started)

    training = _training_summary(run, meta)
    report = DetectorReport(out)
    evals: dict[str, DetectionEval] = {}
    cards: dict[str, dict[str, Any]] = {}
    for file, (_, _, backend, _) in ARTEFACTS.items():
        fields = card_fields(file, name, meta, training, fov)
        write_card(out / file, fields)
        with Detector.open(out / file, backend) as det:
            evals[file] = evaluate_detector(det, data, split, background)
            if fov is not None:  # the same frames with nothing left outside the field of view
                blacked = evaluate_detector(det, data, split, background, transform=fov.apply)
        fields["evaluation"] = {
            "split": "validation",
            "backend": backend,
            **evals[file].summary.as_dict(),
        }
        if fov is not None:
            fields["evaluation_fov_blacked_out"] = blacked.summary.as_dict()
        cards[file] = fields
        report.rows.append({"file": file, "backend": backend, "evaluation": fields["evaluation"]})
        log.info("%s: %s", file, fields["evaluation"])

    failures = []
    for int8, fp32 in (("int8.xml", "fp32.xml"), ("int8.tflite", "fp32.tflite")):
        ref, got = evals[fp32].summary, evals[int8].summary
        parity, matched = box_parity(
            [d.above(0.25) for d in evals[fp32].detections],
            [d.above(0.25) for d in evals[int8].detections],
        )
        loss = (ref.map50 - got.map50) * 100
        check = {
            "fp32_file": fp32,
            "map50_loss_points": round(loss, 2),
            "tolerance_points": tolerance,
            "box_parity": parity,
            "box_parity_matched": matched,
            "box_parity_iou": PARITY_IOU,
        }
        cards[int8]["fp32_reference"] = cards[fp32]["evaluation"]
        cards[int8]["int8_check"] = check
        next(r for r in report.rows if r["file"] == int8)["int8_check"] = check
        if loss > tolerance:
            failures.append(f"{int8} loses {loss:.2f} points mAP@0.5 against {fp32}")
        if parity < min_box_parity:
            failures.append(f"{int8}: only {parity:.3f} of matched boxes reach IoU {PARITY_IOU}")
    for file, fields in cards.items():
        write_card(out / file, fields)
    if failures:
        report.failure = "; ".join(failures)
    return report
