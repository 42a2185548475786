"""The runtime's models, opened from the settings: each on its own backend and device,
checked against its card's sha256, warmed up, and reporting where it really runs.

A model is known by its role, the settings table it came from: ``classifier``,
``detector``, and each further detector ``detector.<name>``. Findings carry the role; the
boxes of all detectors share one class-id space on the link (each detector's labels in
turn, in role order), so a recorder reads them as one list of names."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backends import BackendOptions, options_for, thread_count
from edge.bundled import resolve_model
from edge.errors import ModelError, OptionError
from edge.models.classifier import Classifier
from edge.models.detector import Detector
from edge.preprocess import Image
from edge.runtime.config import BACKEND_SETTINGS, Config
from edge.runtime.stats import DETECTION_BOXES, DETECTION_FRAMES
from edge.study.store import Finding
from edge.types import Classification, Detection, Detections

log = logging.getLogger(__name__)

TASKS = {"classifier": "classification", "detector": "detection"}


def task_of(role: str) -> str:
    return TASKS[role.partition(".")[0]]


@dataclass
class Inferred:
    classification: Classification | None
    detections: dict[str, Detections] = field(default_factory=dict)  # role -> its boxes
    timings_ms: dict[str, float] = field(default_factory=dict)

    def boxes(self) -> list[tuple[str, Detection]]:
        """Every detector's boxes with their role, in role order (as ``findings``)."""
        return [(role, d) for role, found in self.detections.items() for d in found.items]

    def findings(self) -> list[Finding]:
        out = []
        if self.classification is not None:
            top = self.classification.top
            scores = tuple((c.label, c.score) for c in self.classification.scores)
            out.append(Finding("classifier", top.label, top.score, scores=scores))
        for role, d in self.boxes():
            b = d.box
            out.append(Finding(role, d.label, d.score, (b.x0, b.y0, b.x1, b.y1)))
        return out


def threads(config: Config, role: str) -> int:
    """The inference threads of a model: ``threads = 0`` is every core, decided by the
    same function as for a model opened in code (``edge.backends.thread_count``)."""
    return thread_count(int(config[f"{role}.threads"]))


def _options(config: Config, role: str) -> BackendOptions:
    """The options of the role's backend. Only the settings given (in the file or on the
    command line) go to it, so one it does not take is an error, not silently ignored."""
    backend = config[f"{role}.backend"]
    given: dict[str, Any] = {"threads": config[f"{role}.threads"]}
    for key in BACKEND_SETTINGS:
        dotted = f"{role}.{key}"
        value = config[dotted]
        if config.origin[dotted] != "default" and value not in ("", []):
            given[key] = tuple(value) if isinstance(value, list) else value

    def label(key: str, value: Any) -> str:
        return f"{key} = {value!r} ({config.origin[f'{role}.{key}']})"

    try:
        return options_for(backend, given, label)
    except OptionError as exc:
        raise ModelError(f"[{role}] {exc}") from None


def _model_path(config: Config, role: str) -> Path:
    """A model file, a bundled name (the artefact the backend runs best) or the default."""
    given = config[f"{role}.model"]
    if given and Path(given).exists():
        return Path(given)
    if given and ("/" in given or Path(given).suffix in (".tflite", ".xml", ".onnx", ".json")):
        raise ModelError(f"[{role}] model {given}: no such file")
    try:
        return resolve_model(given or None, task_of(role), config[f"{role}.backend"]).path
    except ModelError as exc:
        raise ModelError(f"[{role}] {exc} ({config.origin[f'{role}.model']})") from None


def _bundled_or_given(config: Config, role: str) -> bool:
    """False (with a warning) when no model is named and this install bundles none:
    the runtime then runs without that model rather than not at all."""
    origin = config.origin[f"{role}.model"]
    if config[f"{role}.model"] and not origin.startswith("profile "):
        return True
    try:
        resolve_model(config[f"{role}.model"] or None, task_of(role), config[f"{role}.backend"])
    except ModelError as exc:
        log.warning("%s; running without the %s", exc, role)
        return False
    return True


class Models:
    """The enabled models; ``infer`` runs each on a decoded RGB frame."""

    def __init__(self, classifier: Classifier | None, detectors: dict[str, Detector]) -> None:
        self.classifier = classifier
        self.detectors = detectors  # role -> detector, [detector] first
        self.fallbacks: list[str] = []
        for role, model in self.roles():
            if model.backend.fallback:
                self.fallbacks.append(f"{role}: {model.backend.fallback}")

    @property
    def detector(self) -> Detector | None:
        """The [detector] role's detector."""
        return self.detectors.get("detector")

    def roles(self) -> list[tuple[str, Classifier | Detector]]:
        first = [("classifier", self.classifier)] if self.classifier is not None else []
        return [*first, *self.detectors.items()]

    @classmethod
    def open(cls, config: Config) -> Models:
        classifier = None
        detectors: dict[str, Detector] = {}
        try:
            if config["classifier.enabled"]:
                classifier = Classifier.open(
                    _model_path(config, "classifier"),
                    config["classifier.backend"],
                    _options(config, "classifier"),
                )
            for role in config.roles()[1:]:
                if config[f"{role}.enabled"] and _bundled_or_given(config, role):
                    detectors[role] = Detector.open(
                        _model_path(config, role),
                        config[f"{role}.backend"],
                        _options(config, role),
                        conf_threshold=config[f"{role}.conf"],
                        iou_threshold=config[f"{role}.iou"],
                    )
        except BaseException:
            for model in [classifier, *detectors.values()]:
                if model is not None:
                    model.close()
            raise
        if classifier is None and not detectors:
            raise ModelError(
                "every model ([classifier], [detector]...) is disabled: nothing to run"
            )
        return cls(classifier, detectors)

    def describe(self) -> dict[str, Any]:
        """What runs, where: for the study's run record, /stats and the start-up line."""
        return {
            role: {
                "name": model.card.name,
                "file": str(model.card.model_path),
                "sha256": model.card.sha256,
                "files": model.card.files,  # every file of the artefact, checked
                "precision": model.card.precision,
                "labels": list(model.labels),
                "backend": model.backend.name,
                "device": model.backend.device,
                "fallback": model.backend.fallback,
            }
            for role, model in self.roles()
        }

    def infer(self, image: Image) -> Inferred:
        result = Inferred(None)
        if self.classifier is not None:
            start = time.perf_counter()
            result.classification = self.classifier.classify(image)
            result.timings_ms["classifier"] = (time.perf_counter() - start) * 1e3
        for role, detector in self.detectors.items():
            start = time.perf_counter()
            result.detections[role] = detector.detect(image)
            result.timings_ms[role] = (time.perf_counter() - start) * 1e3
        return result

    def box_offsets(self) -> dict[str, int]:
        """Each detector's first id in the link's shared list of box class names."""
        out, at = {}, 0
        for role, detector in self.detectors.items():
            out[role] = at
            at += len(detector.labels)
        return out

    def class_names(self) -> tuple[list[str], list[str]]:
        """The names of RESULT's class ids and of its boxes' class ids."""
        classes = list(self.classifier.labels) if self.classifier is not None else []
        return classes, [label for d in self.detectors.values() for label in d.labels]

    def close(self) -> None:
        for _, model in self.roles():
            model.close()


def model_figures(models: Models, counters: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Each model's output so far, by role: what it is and, for a detector, its frames
    with a box and its boxes; for the classifier, its top classes."""
    out: dict[str, dict[str, Any]] = {}
    for role, model in models.roles():
        entry: dict[str, Any] = {
            "name": model.card.name,
            "labels": list(model.labels),
            "backend": model.backend.name,
        }
        if role == "classifier":
            entry["top_class"] = {
                label: counters.get(f"class_{label}", 0) for label in model.labels
            }
        else:
            entry["frames_with_boxes"] = counters.get(DETECTION_FRAMES + role, 0)
            entry["boxes"] = counters.get(DETECTION_BOXES + role, 0)
        out[role] = entry
    return out
