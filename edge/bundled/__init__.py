"""The models that ship with the runtime, each beside its card.

They live inside the package so that ``pip install capsule-edge`` on a device brings
them. ``CAPSULE_EDGE_MODELS`` points the runtime at another folder of the same layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.backends.registry import BACKENDS
from edge.errors import ModelError
from edge.models.card import CARD_SUFFIX, ModelCard, load_card

# The bundled default per task, as a folder holding that model's artefacts.
DEFAULTS = {"classification": "classifier/edgecnn", "detection": "detector/yolov5s-256"}
PRECISION_PREFERENCE = ("int8", "fp32")


def models_root() -> Path:
    override = os.environ.get("CAPSULE_EDGE_MODELS")
    return Path(override) if override else Path(__file__).parent


def bundled_cards(root: Path | None = None) -> list[ModelCard]:
    root = root or models_root()
    return [load_card(p) for p in sorted(root.rglob("*" + CARD_SUFFIX))]


def default_model(task: str, backend: str, root: Path | None = None) -> ModelCard:
    """The bundled default for ``task`` in the artefact the backend runs best: int8 in
    the backend's own format first."""
    root = root or models_root()
    folder = root / DEFAULTS[task]
    cards = (
        [load_card(p) for p in sorted(folder.glob("*" + CARD_SUFFIX))] if folder.is_dir() else []
    )
    formats = BACKENDS[backend].formats
    for fmt in formats:
        for precision in PRECISION_PREFERENCE:
            for card in cards:
                if card.format == fmt and card.precision == precision:
                    return card
    raise ModelError(
        f"{folder}: no bundled {task} model for backend {backend!r} "
        f"(needs a {' or '.join(formats)} model)"
    )
