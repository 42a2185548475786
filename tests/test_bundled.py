"""The bundled models on the real validation split: the accuracy this project promises."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge.bundled import bundled_cards, default_model, models_root
from edge.eval.classifier import evaluate_classifier
from edge.models.classifier import Classifier

DEFAULT = models_root() / "classifier" / "edgecnn"


def test_bundled_cards_match_their_files():
    cards = bundled_cards()
    # A classifier card names its architecture, a detector card its model.
    assert {(c.task, c.raw.get("arch", c.name), c.format, c.precision) for c in cards} >= {
        ("classification", "edgecnn", "tflite", "int8"),
        ("classification", "edgecnn", "openvino", "int8"),
        ("classification", "seed", "tflite", "int8"),
        ("classification", "seed", "openvino", "int8"),
        ("detection", "yolov5s-256", "tflite", "int8"),
        ("detection", "yolov5s-256", "openvino", "int8"),
        ("detection", "yolov5s-256", "onnx", "fp32"),
    }
    for card in cards:
        card.verify()


@pytest.mark.parametrize(
    ("backend", "fmt", "precision"),
    [
        ("litert", "tflite", "int8"),
        ("openvino", "openvino", "int8"),
        ("onnxruntime", "onnx", "fp32"),
    ],
)
def test_default_model_per_backend(backend, fmt, precision):
    card = default_model("classification", backend)
    assert (card.raw["arch"], card.format, card.precision) == ("edgecnn", fmt, precision)


@pytest.fixture(scope="module")
def validation(hyper_kvasir: Path) -> dict:
    split = DEFAULT / "split.json"
    results = {}
    for backend, file in [("litert", "int8.tflite"), ("openvino", "int8.xml")]:
        with Classifier.open(DEFAULT / file, backend) as clf:
            for blackout in (False, True):
                r = evaluate_classifier(clf, hyper_kvasir, split=split, blackout=blackout)
                results[backend, blackout] = r
    return results


@pytest.mark.parametrize("blackout", [False, True])
@pytest.mark.parametrize("backend", ["litert", "openvino"])
@pytest.mark.slow
def test_default_int8_reaches_its_promise(validation, backend, blackout):
    r = validation[backend, blackout]
    assert r.metrics["n"] == len(json.loads((DEFAULT / "split.json").read_text())["validation"])
    assert r.metrics["macro_f1"] >= 0.90


@pytest.mark.slow
def test_litert_and_openvino_int8_agree(validation):
    assert validation["litert", False].keys == validation["openvino", False].keys
    a = np.array(validation["litert", False].predictions)
    b = np.array(validation["openvino", False].predictions)
    assert len(a) == len(b) > 0
    assert (a == b).mean() >= 0.99
