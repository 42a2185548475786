"""The runtime's models, opened from the settings: each on its own backend and device,
checked against its card's sha256, warmed up, and reporting where it really runs."""

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
from edge.study.store import Finding
from edge.types import Classification, Detections

log = logging.getLogger(__name__)

TASKS = {"classifier": "classification", "detector": "detection"}


@dataclass
class Inferred:
    classification: Classification | None
    detections: Detections | None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def findings(self) -> list[Finding]:
        out = []
        if self.classification is not None:
            top = self.classification.top
            scores = tuple((c.label, c.score) for c in self.classification.scores)
            out.append(Finding("classifier", top.label, top.score, scores=scores))
        if self.detections is not None:
            for d in self.detections.items:
                b = d.box
                out.append(Finding("detector", d.label, d.score, (b.x0, b.y0, b.x1, b.y1)))
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
        return resolve_model(given or None, TASKS[role], config[f"{role}.backend"]).path
    except ModelError as exc:
        raise ModelError(f"[{role}] {exc} ({config.origin[f'{role}.model']})") from None


def _bundled_or_given(config: Config, role: str) -> bool:
    """False (with a warning) when no model is named and this install bundles none:
    the runtime then runs without that model rather than not at all."""
    origin = config.origin[f"{role}.model"]
    if config[f"{role}.model"] and not origin.startswith("profile "):
        return True
    try:
        resolve_model(config[f"{role}.model"] or None, TASKS[role], config[f"{role}.backend"])
    except ModelError as exc:
        log.warning("%s; running without the %s", exc, role)
        return False
    return True


class Models:
    """The enabled models; ``infer`` runs each on a decoded RGB frame."""

    def __init__(self, classifier: Classifier | None, detector: Detector | None) -> None:
        self.classifier = classifier
        self.detector = detector
        self.fallbacks: list[str] = []
        for role, model in (("classifier", classifier), ("detector", detector)):
            if model is not None and model.backend.fallback:
                self.fallbacks.append(f"{role}: {model.backend.fallback}")

    @classmethod
    def open(cls, config: Config) -> Models:
        classifier = detector = None
        try:
            if config["classifier.enabled"]:
                classifier = Classifier.open(
                    _model_path(config, "classifier"),
                    config["classifier.backend"],
                    _options(config, "classifier"),
                )
            if config["detector.enabled"] and _bundled_or_given(config, "detector"):
                detector = Detector.open(
                    _model_path(config, "detector"),
                    config["detector.backend"],
                    _options(config, "detector"),
                    conf_threshold=config["detector.conf"],
                    iou_threshold=config["detector.iou"],
                )
        except BaseException:
            if classifier is not None:
                classifier.close()
            raise
        if classifier is None and detector is None:
            raise ModelError("both [classifier] and [detector] are disabled: nothing to run")
        return cls(classifier, detector)

    def describe(self) -> dict[str, Any]:
        """What runs, where: for the study's run record, /stats and the start-up line."""
        out: dict[str, Any] = {}
        for role, model in (("classifier", self.classifier), ("detector", self.detector)):
            if model is not None:
                out[role] = {
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
        return out

    def infer(self, image: Image) -> Inferred:
        result = Inferred(None, None)
        if self.classifier is not None:
            start = time.perf_counter()
            result.classification = self.classifier.classify(image)
            result.timings_ms["classifier"] = (time.perf_counter() - start) * 1e3
        if self.detector is not None:
            start = time.perf_counter()
            result.detections = self.detector.detect(image)
            result.timings_ms["detector"] = (time.perf_counter() - start) * 1e3
        return result

    def class_names(self) -> tuple[list[str], list[str]]:
        """The names of RESULT's class ids and of its boxes' class ids."""
        return (
            list(self.classifier.labels) if self.classifier is not None else [],
            list(self.detector.labels) if self.detector is not None else [],
        )

    def close(self) -> None:
        for model in (self.classifier, self.detector):
            if model is not None:
                model.close()
