"""Model cards: a checksum over every file of an artefact, and every field checked for
its type, so that a damaged model or card is one line at load, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundled import models_root
from edge.errors import ModelError
from edge.models.card import load_card
from edge.models.classifier import Classifier
from tests.conftest import synthetic_frame

EDGECNN = models_root() / "classifier" / "edgecnn"
LABELS = ["bbps-0-1", "bbps-2-3", "cecum", "impacted-stool", "polyps"]


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [synthetic_frame(label, rng) for label in ("mucosa", "stool") * 4]


# --- checksums over every file of an artefact ------------------------------------------------


def _copy(files: list[str], src: Path, dst: Path) -> Path:
    for name in files:
        shutil.copyfile(src / name, dst / name)
    return dst


def _flip(path: Path, offset: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_tampered_model_fails_its_checksum(tmp_path: Path):
    _copy(["int8.tflite", "int8.tflite.card.json"], EDGECNN, tmp_path)
    _flip(tmp_path / "int8.tflite", 200, 3)
    with pytest.raises(ModelError, match=r"int8\.tflite: sha256 .* does not match its card"):
        Classifier.open(tmp_path / "int8.tflite", "litert")


def test_flipped_openvino_weights_fail_their_checksum(tmp_path: Path):
    """The card's sha256 covered only the .xml: 590 bytes flipped in the .bin loaded
    without a word and changed the scores."""
    _copy(["int8.xml", "int8.bin", "int8.xml.card.json"], EDGECNN, tmp_path)
    frames = _frames()
    with Classifier.open(tmp_path / "int8.xml", "openvino") as clf:
        before = clf.probabilities([clf.preprocess(f) for f in frames])
    size = (tmp_path / "int8.bin").stat().st_size
    _flip(tmp_path / "int8.bin", size // 3, 590)
    with pytest.raises(ModelError) as info:
        Classifier.open(tmp_path / "int8.xml", "openvino")
    assert "int8.bin: sha256" in str(info.value) and "does not match its card" in str(info.value)
    assert "\n" not in str(info.value)
    # What the checksum stands between: the damaged weights load and score otherwise.
    with Classifier.open(tmp_path / "int8.xml", "openvino", verify=False) as clf:
        after = clf.probabilities([clf.preprocess(f) for f in frames])
    assert np.abs(after - before).max() > 0.01


def test_every_bundled_card_covers_every_file_of_its_artefact():
    for card in (load_card(p) for p in models_root().rglob("*.card.json")):
        names = {p.name for p in card.artefact_files()}
        assert set(card.raw["files"]) == names, card.path
        if card.format == "openvino":
            assert card.model_path.with_suffix(".bin").name in names
        card.verify()


def test_an_old_openvino_card_without_the_bin_checksum_is_refused(tmp_path: Path):
    _copy(["int8.xml", "int8.bin"], EDGECNN, tmp_path)
    raw = json.loads((EDGECNN / "int8.xml.card.json").read_text())
    del raw["files"]
    (tmp_path / "int8.xml.card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=r"card has no sha256 for int8\.bin"):
        Classifier.open(tmp_path / "int8.xml", "openvino")


def test_an_old_single_file_card_still_loads(tmp_path: Path):
    _copy(["int8.tflite"], EDGECNN, tmp_path)
    raw = json.loads((EDGECNN / "int8.tflite.card.json").read_text())
    del raw["files"]
    (tmp_path / "int8.tflite.card.json").write_text(json.dumps(raw))
    with Classifier.open(tmp_path / "int8.tflite") as clf:
        assert clf.labels == LABELS


def test_write_card_lists_every_file(tmp_path: Path):
    from edge.models.card import write_card

    _copy(["int8.xml", "int8.bin"], EDGECNN, tmp_path)
    raw = json.loads((EDGECNN / "int8.xml.card.json").read_text())
    fields = {k: v for k, v in raw.items() if k not in ("file", "sha256", "files")}
    card = load_card(write_card(tmp_path / "int8.xml", fields))
    assert card.raw["files"] == raw["files"] and card.sha256 == raw["sha256"]


# --- cards ---------------------------------------------------------------------------------


def test_model_without_card(tmp_path: Path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match="no model card beside it"):
        Classifier.open(tmp_path / "m.tflite")


def test_malformed_card(tmp_path: Path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    (tmp_path / "m.tflite.card.json").write_text('{"task": "classification"}')
    with pytest.raises(ModelError, match="card has no 'format' field"):
        Classifier.open(tmp_path / "m.tflite")


BAD_VALUES = ["oops", 3, None, [], {}, True]
FIELDS = [
    "file",
    "sha256",
    "files",
    "name",
    "labels",
    "input",
    "preprocessing",
    "output",
    ("input", "shape"),
    ("input", "quantization"),
    ("output", "quantization"),
    ("preprocessing", "id"),
]


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: ".".join(f) if isinstance(f, tuple) else f)
def test_a_card_field_of_the_wrong_type_is_a_model_error(tmp_path: Path, field: Any):
    """``"input": "oops"`` was a traceback: every field, every wrong type, one line."""
    _copy(["int8.tflite"], EDGECNN, tmp_path)
    original = json.loads((EDGECNN / "int8.tflite.card.json").read_text())
    for value in BAD_VALUES:
        raw = json.loads(json.dumps(original))
        if isinstance(field, tuple):
            raw[field[0]][field[1]] = value
        else:
            raw[field] = value
        (tmp_path / "int8.tflite.card.json").write_text(json.dumps(raw))
        try:
            with Classifier.open(tmp_path / "int8.tflite") as clf:
                clf.classify(_frames()[0])
        except ModelError as exc:
            assert "\n" not in str(exc)
        else:  # a value the runtime may take: a name, no files map, no quantization
            assert (field, value) in [
                ("name", "oops"),
                ("files", None),
                ("output", {}),
                (("input", "quantization"), None),
                (("output", "quantization"), None),
            ], (field, value)
