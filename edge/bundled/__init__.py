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
# What a study runs, by the kind of study: each role's bundled model by name (None: the
# role is off). colon: colonoscopy-trained classifier and polyp detector. capsule: the
# bleeding detector trained on capsule frames; the colon models never saw a capsule
# frame (the polyp detector marks 24.7 of 100 capsule frames without bleeding).
PROFILES: dict[str, dict[str, str | None]] = {
    "colon": {"classifier": "edgecnn", "detector": "yolov5s-256"},
    "capsule": {"classifier": None, "detector": "yolov5s-bleeding-224"},
}


def models_root() -> Path:
    override = os.environ.get("CAPSULE_EDGE_MODELS")
    return Path(override) if override else Path(__file__).parent


def bundled_cards(root: Path | None = None) -> list[ModelCard]:
    root = root or models_root()
    return [load_card(p) for p in sorted(root.rglob("*" + CARD_SUFFIX))]


def model_names(root: Path | None = None) -> list[str]:
    """The names ``--model`` takes: each bundled card's name, and for a model bundled in
    several artefacts each artefact's ``name-precision-format`` too."""
    names: list[str] = []
    for card in bundled_cards(root):
        for name in (base_name(card), card.name, qualified_name(card)):
            if name not in names:
                names.append(name)
    return names


def base_name(card: ModelCard) -> str:
    """The model's name without its artefact's ``-precision-format``: one name for all
    the artefacts of a model (``edgecnn`` for ``edgecnn-int8-tflite``)."""
    suffix = f"-{card.precision}-{card.format}"
    return card.name.removesuffix(suffix)


def qualified_name(card: ModelCard) -> str:
    return f"{base_name(card)}-{card.precision}-{card.format}"


def resolve_model(
    given: str | None, task: str, backend: str, root: Path | None = None
) -> ModelCard:
    """``--model``: a model file or card, a bundled name (the artefact that ``backend``
    runs best, as for the default), or nothing (the bundled default for ``task``)."""
    if not given:
        return default_model(task, backend, root)
    if Path(given).exists():
        return load_card(Path(given))
    of_task = [c for c in bundled_cards(root) if c.task == task]
    cards = [c for c in of_task if given in (base_name(c), c.name, qualified_name(c))]
    if (card := _runs_best(cards, backend)) is not None:
        return card
    if cards:
        raise ModelError(
            f"--model {given}: bundled, but not in a format backend {backend!r} runs "
            f"({' or '.join(BACKENDS[backend].formats)})"
        )
    known = dict.fromkeys(n for c in of_task for n in (base_name(c), qualified_name(c)))
    raise ModelError(
        f"--model {given}: no such file, nor a bundled {task} model "
        f"(`capsule-edge models` lists them: {', '.join(known)})"
    )


def _runs_best(cards: list[ModelCard], backend: str) -> ModelCard | None:
    """The artefact ``backend`` runs best: its own format first, int8 before fp32."""
    for fmt in BACKENDS[backend].formats:
        for precision in PRECISION_PREFERENCE:
            for card in cards:
                if card.format == fmt and card.precision == precision:
                    return card
    return None


def default_model(task: str, backend: str, root: Path | None = None) -> ModelCard:
    """The bundled default for ``task`` in the artefact the backend runs best: int8 in
    the backend's own format first."""
    root = root or models_root()
    folder = root / DEFAULTS[task]
    cards = (
        [load_card(p) for p in sorted(folder.glob("*" + CARD_SUFFIX))] if folder.is_dir() else []
    )
    if (card := _runs_best(cards, backend)) is not None:
        return card
    raise ModelError(
        f"{folder}: no bundled {task} model for backend {backend!r} "
        f"(needs a {' or '.join(BACKENDS[backend].formats)} model)"
    )
