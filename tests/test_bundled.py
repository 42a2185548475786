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


def test_every_name_capsule_edge_models_lists_is_taken_by_model():
    from edge.bundled import bundled_cards, model_names, qualified_name, resolve_model

    for card in bundled_cards():
        backend = {"tflite": "litert", "openvino": "openvino", "onnx": "onnxruntime"}[card.format]
        got = resolve_model(qualified_name(card), card.task, backend)
        assert got.path == card.path  # the very artefact listed
    assert "yolov5s-256" in model_names()
    # A bare name: the artefact the backend runs best, as for the default.
    assert resolve_model("yolov5s-256", "detection", "openvino").model_path.name == "int8.xml"
    assert resolve_model("yolov5s-256", "detection", "onnxruntime").model_path.name == "fp32.onnx"


def test_a_name_that_is_no_model_is_one_line_naming_the_choices():
    from edge.bundled import resolve_model
    from edge.errors import ModelError

    with pytest.raises(ModelError) as err:
        resolve_model("yolov8x-bleeding", "detection", "litert")
    text = str(err.value)
    assert text.splitlines() == [text]
    assert "--model yolov8x-bleeding: no such file" in text and "yolov5s-256-int8-tflite" in text
    with pytest.raises(ModelError, match="not in a format backend 'litert' runs"):
        resolve_model("yolov5s-256-fp32-onnx", "detection", "litert")
