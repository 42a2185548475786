"""Export a trained classifier to int8 and fp32 LiteRT and OpenVINO, and fp32 ONNX;
evaluate every artefact through the edge runtime itself; write a card beside each.

int8 must stay within ``tolerance`` points of fp32 (accuracy and macro-F1), or the
conversion fails loudly. Accuracy is measured on the run's validation split twice:
on frames as they are, and with the overlay regions blacked out in every frame.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BadInputError
from edge.eval.dataset import scan
from edge.eval.metrics import confusion_matrix, summarise
from edge.models.card import write_card
from edge.models.classifier import Classifier
from edge.preprocess import PREPROCESSING_ID, black_out_overlays, prepare
from edge.types import Skipped

log = logging.getLogger(__name__)

# artefact file name -> (format, precision, backend that evaluates it)
ARTEFACTS = {
    "int8.tflite": ("tflite", "int8", "litert"),
    "fp32.tflite": ("tflite", "fp32", "litert"),
    "int8.xml": ("openvino", "int8", "openvino"),
    "fp32.xml": ("openvino", "fp32", "openvino"),
    "fp32.onnx": ("onnx", "fp32", "onnxruntime"),
}


@dataclass
class QuantizeReport:
    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    agreement: float = 0.0
    failure: str | None = None

    @property
    def passed(self) -> bool:
        return self.failure is None

    def table(self) -> str:
        lines = [f"{'artefact':<14}{'backend':<13}{'acc':>7}{'macroF1':>9}{'F1 blacked':>12}"]
        for r in self.rows:
            lines.append(
                f"{r['file']:<14}{r['backend']:<13}{r['raw']['accuracy']:>7.3f}"
                f"{r['raw']['macro_f1']:>9.3f}{r['blacked_out']['macro_f1']:>12.3f}"
            )
        lines.append(f"LiteRT int8 vs OpenVINO int8 top-1 agreement: {self.agreement:.4f}")
        lines.append(f"artefacts and cards in {self.out}")
        return "\n".join(lines)


def _validation_frames(
    run: Path, data: Path, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation frames preprocessed as they are and with overlays blacked out."""
    wanted = set(_read_json(run / "split.json")["validation"])
    classes = _read_json(run / "training.json")["data"]["classes"]
    index = {c: i for i, c in enumerate(classes)}
    raw, blacked, labels = [], [], []
    for item in scan(data).only(wanted).load():
        if isinstance(item, Skipped) or item[0].label not in index:
            continue
        sample, image = item
        raw.append(prepare(image, size))
        blacked.append(prepare(black_out_overlays(image), size))
        labels.append(index[sample.label])
    if len(labels) != len(wanted):
        raise BadInputError(
            f"{data}: found {len(labels)} of the run's {len(wanted)} validation frames; "
            "is this the dataset it was trained on?"
        )
    return np.stack(raw), np.stack(blacked), np.asarray(labels)


def _calibration(run: Path, data: Path, size: int, count: int, seed: int) -> np.ndarray:
    """Preprocessed frames drawn at random (seeded) from the training split."""
    keys = sorted(_read_json(run / "split.json")["train"])
    rng = np.random.default_rng(seed)
    chosen = {keys[i] for i in rng.choice(len(keys), min(count, len(keys)), replace=False)}
    frames = [
        prepare(item[1], size)
        for item in scan(data).only(chosen).load()
        if not isinstance(item, Skipped)
    ]
    if not frames:
        raise BadInputError(f"{data}: none of the run's training frames could be read")
    return np.stack(frames).astype(np.float32)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(
            f"{path.parent}: not a train-classifier run folder ({path.name} is missing)"
        ) from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable ({exc})") from None


def _export_all(model_path: Path, out: Path, calib: np.ndarray) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import nncf
    import openvino as ov
    import tensorflow as tf
    import tf2onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from convert.tflite import write_tflite

    model = keras.models.load_model(model_path)
    size = int(model.input_shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        model.export(str(saved), verbose=False)

        write_tflite(saved, calib, out)

        ov_model = ov.convert_model(str(saved))
        ov_model.reshape({ov_model.inputs[0].get_any_name(): [1, size, size, 3]})
        ov.save_model(ov_model, str(out / "fp32.xml"), compress_to_fp16=False)
        calibration = nncf.Dataset(list(calib), lambda f: f[None])
        # Asymmetric activations (MIXED) with plain min/max ranges, as LiteRT's converter
        # does, and the full bias correction: they keep NNCF's model close to fp32 and
        # to the LiteRT int8 model.
        quantized = nncf.quantize(
            ov_model,
            calibration,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calib),
            fast_bias_correction=False,
            advanced_parameters=AdvancedQuantizationParameters(
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
            ),
        )
        ov.save_model(quantized, str(out / "int8.xml"), compress_to_fp16=False)

    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    tf2onnx.convert.from_function(
        tf.function(lambda x: model(x, training=False)),
        input_signature=spec,
        opset=17,
        output_path=str(out / "fp32.onnx"),
    )


def _evaluate(
    card_path: Path, backend: str, frames: np.ndarray, labels: np.ndarray, classes: list[str]
) -> tuple[dict[str, Any], np.ndarray]:
    with Classifier.open(card_path, backend) as clf:
        predicted = np.concatenate(
            [clf.probabilities(list(frames[i : i + 1])).argmax(axis=1) for i in range(len(frames))]
        )
    return summarise(confusion_matrix(labels, predicted, len(classes)), classes), predicted


def quantize_run(
    run: Path, data: Path, tolerance: float = 1.0, calibration: int = 1000, name: str | None = None
) -> QuantizeReport:
    training = _read_json(run / "training.json")
    if not (run / "model.keras").is_file():
        raise BadInputError(f"{run}: not a train-classifier run folder (model.keras is missing)")
    classes: list[str] = training["data"]["classes"]
    size = int(training["input_size"])
    out = run / "artefacts"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    calib = _calibration(run, data, size, calibration, training["seed"])
    started = time.time()
    _export_all(run / "model.keras", out, calib)
    log.info("exported in %.0f s", time.time() - started)
    raw, blacked, labels = _validation_frames(run, data, size)

    report = QuantizeReport(out)
    predictions: dict[str, np.ndarray] = {}
    results: dict[str, dict[str, Any]] = {}
    cards: dict[str, dict[str, Any]] = {}
    for file, (fmt, precision, backend) in ARTEFACTS.items():
        fields = _card_fields(
            name or training["arch"], fmt, precision, classes, size, training, calibration
        )
        if precision == "int8" and fmt == "tflite":
            fields["input"]["quantization"], fields["output"]["quantization"] = (
                _tflite_quantization(out / file)
            )
        card = write_card(out / file, fields)  # the runtime opens the model through it
        m_raw, pred = _evaluate(card, backend, raw, labels, classes)
        m_blacked, _ = _evaluate(card, backend, blacked, labels, classes)
        predictions[file] = pred
        results[file] = {"raw": m_raw, "blacked_out": m_blacked}
        cards[file] = fields
        report.rows.append(
            {"file": file, "backend": backend, "raw": m_raw, "blacked_out": m_blacked}
        )

    report.agreement = float((predictions["int8.tflite"] == predictions["int8.xml"]).mean())
    failures = []
    for int8, fp32 in (("int8.tflite", "fp32.tflite"), ("int8.xml", "fp32.xml")):
        for metric in ("accuracy", "macro_f1"):
            loss = 100 * (results[fp32]["raw"][metric] - results[int8]["raw"][metric])
            if loss > tolerance:
                failures.append(f"{int8} loses {loss:.1f} points of {metric} against {fp32}")
    if failures:
        report.failure = "; ".join(failures) + f" (tolerance {tolerance} points)"

    for file, (_, _, backend) in ARTEFACTS.items():
        cards[file]["evaluation"] = {
            "split": "validation",
            "backend": backend,
            "frames": len(labels),
            "as_is": _brief(results[file]["raw"]),
            "overlays_blacked_out": _brief(results[file]["blacked_out"]),
        }
        fp32_twin = file.replace("int8", "fp32")
        if fp32_twin != file:
            cards[file]["evaluation"]["fp32_reference"] = {
                "file": fp32_twin,
                "as_is": _brief(results[fp32_twin]["raw"]),
                "overlays_blacked_out": _brief(results[fp32_twin]["blacked_out"]),
            }
        cards[file]["int8_check"] = {
            "tolerance_points": tolerance,
            "passed": report.passed,
            "litert_openvino_int8_top1_agreement": round(report.agreement, 4),
        }
        write_card(out / file, cards[file])
    (out / "report.json").write_text(
        json.dumps(
            {"rows": report.rows, "agreement": report.agreement, "failure": report.failure},
            indent=1,
        )
        + "\n"
    )
    return report


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "recall": {k: v["recall"] for k, v in m["per_class"].items()},
    }


def _tflite_quantization(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output quantisation of an int8 .tflite, as LiteRT reports them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale_zp = [d["quantization"] for d in details]
    return (
        {"scale": float(scale_zp[0][0]), "zero_point": int(scale_zp[0][1])},
        {"scale": float(scale_zp[1][0]), "zero_point": int(scale_zp[1][1])},
    )


def _card_fields(
    name: str,
    fmt: str,
    precision: str,
    classes: list[str],
    size: int,
    training: dict[str, Any],
    calibration: int,
) -> dict[str, Any]:
    int8_tflite = fmt == "tflite" and precision == "int8"
    data = training["data"]
    return {
        "name": f"{name}-{precision}-{fmt}",
        "task": "classification",
        "arch": training["arch"],
        "format": fmt,
        "precision": precision,
        "labels": classes,
        "input": {
            "shape": [1, size, size, 3],
            "layout": "NHWC",
            "color": "RGB",
            "dtype": "int8" if int8_tflite else "float32",
            "range": [0, 255],
            "quantization": None,
        },
        "output": {"kind": "probabilities", "dtype": "int8" if int8_tflite else "float32"},
        "preprocessing": {"id": PREPROCESSING_ID, "size": size},
        "quantization": (
            {
                "method": "LiteRT full-integer" if fmt == "tflite" else "NNCF post-training",
                "calibration_frames": calibration,
                "calibration_split": "train",
            }
            if precision == "int8"
            else None
        ),
        "training": {
            "classes": classes,
            "frames": data["frames"],
            "per_class": data["per_class"],
            "train_frames": data["train_frames"],
            "validation_frames": data["validation_frames"],
            "epochs": training["epochs"],
            "parameters": training["parameters"],
            "recipe": training["recipe"],
        },
        "limitations": (
            "Trained on one public dataset in which the polyp frames come from another "
            "source than the other classes; overlays are neutralised, but differences in "
            "colour processing and optics between sources cannot be ruled out as cues."
        ),
    }
