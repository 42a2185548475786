"""Model cards: the JSON beside every model file that says what the file is.

The runtime reads format, precision, labels, input layout and preprocessing from the card
and never guesses them from a file name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.backends.base import Quantization
from edge.errors import ModelError

CARD_SUFFIX = ".card.json"
FORMATS = ("tflite", "openvino", "onnx")
PRECISIONS = ("int8", "fp32")
TASKS = ("classification", "detection")


def card_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + CARD_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelCard:
    path: Path  # the card itself
    raw: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path.parent / str(self.raw["file"])

    @property
    def task(self) -> str:
        return str(self.raw["task"])

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def format(self) -> str:
        return str(self.raw["format"])

    @property
    def precision(self) -> str:
        return str(self.raw["precision"])

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.raw["labels"]]

    @property
    def input_size(self) -> int:
        return int(self.raw["input"]["shape"][1])

    @property
    def preprocessing_id(self) -> str:
        return str(self.raw["preprocessing"]["id"])

    @property
    def input_quantization(self) -> Quantization | None:
        return _quantization(self.raw["input"].get("quantization"))

    @property
    def output_quantization(self) -> Quantization | None:
        return _quantization(self.raw.get("output", {}).get("quantization"))

    @property
    def sha256(self) -> str:
        return str(self.raw["sha256"])

    def size_bytes(self) -> int:
        total = self.model_path.stat().st_size
        if self.format == "openvino":
            total += self.model_path.with_suffix(".bin").stat().st_size
        return total

    def verify(self) -> None:
        """Check that the model file exists and matches the card's sha256."""
        if not self.model_path.is_file():
            raise ModelError(f"{self.path}: model file {self.model_path.name} is missing")
        actual = sha256_of(self.model_path)
        if actual != self.sha256:
            raise ModelError(
                f"{self.model_path}: sha256 {actual[:12]}… does not match its card "
                f"({self.sha256[:12]}…)"
            )


def _quantization(q: Any) -> Quantization | None:
    return Quantization(float(q["scale"]), int(q["zero_point"])) if q else None


def _require(raw: dict[str, Any], key: str, where: Path) -> Any:
    if key not in raw:
        raise ModelError(f"{where}: card has no {key!r} field")
    return raw[key]


def validate(raw: Any, where: Path) -> dict[str, Any]:
    """Check a card's structure; raise ``ModelError`` naming the card and the field."""
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: card is not a JSON object")
    for key, allowed in (("task", TASKS), ("format", FORMATS), ("precision", PRECISIONS)):
        value = _require(raw, key, where)
        if value not in allowed:
            raise ModelError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
    for key in ("name", "file", "sha256", "preprocessing"):
        _require(raw, key, where)
    labels = _require(raw, "labels", where)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"{where}: labels must be a non-empty list of strings")
    shape = _require(raw, "input", where).get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3):
        raise ModelError(f"{where}: input.shape must be [batch, size, size, 3], got {shape}")
    return raw


def load_card(path: str | Path) -> ModelCard:
    """Load a card given the card itself or the model file beside it."""
    path = Path(path)
    card = path if path.name.endswith(CARD_SUFFIX) else card_path_for(path)
    if not card.is_file():
        if not path.exists():
            raise ModelError(f"{path}: no such model")
        raise ModelError(f"{path}: no model card beside it (expected {card.name})")
    try:
        raw = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card}: unreadable model card ({exc})") from None
    return ModelCard(card, validate(raw, card))


def write_card(model_path: Path, fields: dict[str, Any]) -> Path:
    """Write the card for ``model_path``, filling in file and sha256."""
    raw = {"file": model_path.name, "sha256": sha256_of(model_path), **fields}
    card = card_path_for(model_path)
    validate(raw, card)
    card.write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return card
