"""Each bundled model's validation frames, for the accuracy on its bench row.

A detector's card says what it was trained on (``training.config``: data, split,
background); a classifier's split sits beside it and its data is HyperKvasir. Paths in
a card are the training machine's; only their last part is kept and looked up under the
data root (``../shared/data`` by default), and a split inside ``edge/bundled`` is found in
the installed package. Absent data is not an error: the row has no accuracy, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.bundled import models_root
from edge.models.card import ModelCard

CLASSIFIER_DATA = "hyper-kvasir"
BUNDLED_PREFIX = "edge/bundled/"


@dataclass(frozen=True)
class ValidationSet:
    task: str
    data: Path
    split: Path | None
    background: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if v is not None else None for k, v in vars(self).items()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ValidationSet:
        def path(key: str) -> Path | None:
            return Path(doc[key]) if doc.get(key) else None

        return cls(str(doc["task"]), Path(doc["data"]), path("split"), path("background"))


def _split(given: str | None, card: ModelCard) -> Path | None:
    beside = card.model_path.parent / "split.json"
    if given and given.startswith(BUNDLED_PREFIX):
        found = models_root() / given.removeprefix(BUNDLED_PREFIX)
        return found if found.is_file() else None
    if given and Path(given).is_file():
        return Path(given)
    return beside if beside.is_file() else None


def find(card: ModelCard, data_root: Path) -> tuple[ValidationSet | None, str | None]:
    """The card's validation set under ``data_root``, or None and why not."""
    if card.task == "classification":
        data, split = data_root / CLASSIFIER_DATA, _split(None, card)
        background = None
    else:
        config = (card.raw.get("training") or {}).get("config") or {}
        if not config.get("data"):
            return None, "its card does not say what it was trained on"
        data = data_root / Path(str(config["data"])).name
        split = _split(config.get("split"), card)
        background = (
            data_root / Path(str(config["background"])).name if config.get("background") else None
        )
        if background is not None and not background.is_dir():
            return None, f"no background frames at {background}"
    if not data.is_dir():
        return None, f"no validation data at {data}"
    if split is None:
        return None, f"no split.json for {card.name}"
    return ValidationSet(card.task, data, split, background), None
