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
        """The model file's own sha256 (for an OpenVINO IR, its .xml's)."""
        return str(self.raw["sha256"])

    @property
    def files(self) -> dict[str, str]:
        """sha256 of every file of the artefact, by name. A card from before the
        ``files`` map had a checksum for the model file alone, which is all there is
        of a .tflite or .onnx; an OpenVINO IR's .bin is then unchecked (``verify``
        refuses it)."""
        listed = self.raw.get("files")
        extra = {str(k): str(v) for k, v in listed.items()} if isinstance(listed, dict) else {}
        return {self.model_path.name: self.sha256, **extra}

    def artefact_files(self) -> list[Path]:
        return artefact_files(self.model_path, self.format)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.artefact_files())

    def verify(self) -> None:
        """Check that every file of the artefact exists and matches the card's sha256."""
        listed = self.files
        for path in self.artefact_files():
            if not path.is_file():
                raise ModelError(f"{self.path}: model file {path.name} is missing")
            expected = listed.get(path.name)
            if expected is None:
                raise ModelError(
                    f"{self.path}: the card has no sha256 for {path.name}, so its bytes "
                    f"cannot be checked (write the card again: capsule-convert writes a "
                    f"'files' map with every file of the artefact)"
                )
            actual = sha256_of(path)
            if actual != expected:
                raise ModelError(
                    f"{path}: sha256 {actual[:12]}… does not match its card ({expected[:12]}…)"
                )


def artefact_files(model_path: Path, fmt: str) -> list[Path]:
    """Every file the backend reads for a model: the IR's .xml and .bin, else the file."""
    if fmt == "openvino":
        return [model_path, model_path.with_suffix(".bin")]
    return [model_path]


def _quantization(q: Any) -> Quantization | None:
    return Quantization(float(q["scale"]), int(q["zero_point"])) if q else None


def _require(raw: dict[str, Any], key: str, where: Path) -> Any:
    if key not in raw:
        raise ModelError(f"{where}: card has no {key!r} field")
    return raw[key]


def _is_sha256(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value.lower())
    )


def _plain_name(value: Any) -> bool:
    """A file name with no folder in it: a card names only files beside itself."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and "/" not in value
        and "\\" not in value
    )


def _check_quantization(q: Any, field: str, where: Path) -> None:
    if q is None:
        return
    ok = (
        isinstance(q, dict)
        and isinstance(q.get("scale"), int | float)
        and not isinstance(q.get("scale"), bool)
        and q["scale"] > 0
        and isinstance(q.get("zero_point"), int)
        and not isinstance(q.get("zero_point"), bool)
    )
    if not ok:
        raise ModelError(
            f"{where}: {field} must be null or {{scale > 0, zero_point (whole)}}, got {q!r}"
        )


def validate(raw: Any, where: Path) -> dict[str, Any]:
    """Check a card's structure; raise ``ModelError`` naming the card and the field.

    Every field the runtime reads is checked here for its type, so that a card with
    ``"input": "oops"`` is one line naming ``input``, not a traceback later."""
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: card is not a JSON object")
    for key, allowed in (("task", TASKS), ("format", FORMATS), ("precision", PRECISIONS)):
        value = _require(raw, key, where)
        if value not in allowed:
            raise ModelError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
    for key in ("name", "file", "sha256", "preprocessing"):
        _require(raw, key, where)
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise ModelError(f"{where}: name must be a non-empty string, got {raw['name']!r}")
    if not _plain_name(raw["file"]):
        raise ModelError(f"{where}: file must name a file beside the card, got {raw['file']!r}")
    if not _is_sha256(raw["sha256"]):
        raise ModelError(f"{where}: sha256 must be 64 hex digits, got {raw['sha256']!r}")
    files = raw.get("files")
    if files is not None and not (
        isinstance(files, dict)
        and files
        and all(_plain_name(k) and _is_sha256(v) for k, v in files.items())
    ):
        raise ModelError(f"{where}: files must map file names to sha256 (64 hex digits)")
    if isinstance(files, dict) and files.get(raw["file"], raw["sha256"]) != raw["sha256"]:
        raise ModelError(f"{where}: files and sha256 disagree about {raw['file']}")
    labels = _require(raw, "labels", where)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"{where}: labels must be a non-empty list of strings")
    preprocessing = raw["preprocessing"]
    if not isinstance(preprocessing, dict) or not isinstance(preprocessing.get("id"), str):
        raise ModelError(f"{where}: preprocessing must be an object with an 'id' string")
    section = _require(raw, "input", where)
    if not isinstance(section, dict):
        raise ModelError(f"{where}: input must be an object with a 'shape', got {section!r}")
    shape = section.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 4
        and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        and shape[1] == shape[2]
        and shape[1] > 0
        and shape[3] == 3
    ):
        raise ModelError(f"{where}: input.shape must be [batch, size, size, 3], got {shape}")
    _check_quantization(section.get("quantization"), "input.quantization", where)
    output = raw.get("output", {})
    if not isinstance(output, dict):
        raise ModelError(f"{where}: output must be an object, got {output!r}")
    _check_quantization(output.get("quantization"), "output.quantization", where)
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
    """Write the card for ``model_path``, filling in file, sha256 and the sha256 of every
    file of the artefact (``files``: an OpenVINO IR's .bin as well as its .xml)."""
    fmt = str(fields.get("format", ""))
    files = {p.name: sha256_of(p) for p in artefact_files(model_path, fmt)}
    raw = {
        "file": model_path.name,
        "sha256": files[model_path.name],
        "files": files,
        **{k: v for k, v in fields.items() if k not in ("file", "sha256", "files")},
    }
    card = card_path_for(model_path)
    validate(raw, card)
    card.write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return card
