"""Measure a classifier on a labelled class-folder dataset, on the device itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import BadInputError
from edge.eval.dataset import read_split, scan
from edge.eval.metrics import confusion_matrix, summarise
from edge.models.classifier import Classifier
from edge.preprocess import Image, black_out_overlays
from edge.types import Skipped


@dataclass
class EvalResult:
    model: str
    backend: str
    data: str
    metrics: dict[str, Any]
    skipped: list[Skipped] = field(default_factory=list)
    unknown_classes: Counter[str] = field(default_factory=Counter)
    blackout: bool = False
    keys: list[str] = field(default_factory=list)  # frames in evaluation order
    predictions: list[int] = field(default_factory=list)  # top-1 index per frame

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.metrics,
            "model": self.model,
            "backend": self.backend,
            "data": self.data,
            "overlays_blacked_out": self.blackout,
            "skipped": [str(s) for s in self.skipped],
            "skipped_unknown_class": dict(self.unknown_classes),
        }

    def text(self) -> str:
        m = self.metrics
        labels = m["labels"]
        lines = [
            f"model {self.model} on {self.backend}, data {self.data}"
            + (" (overlays blacked out)" if self.blackout else ""),
            f"frames {m['n']}  accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}",
            "recall: "
            + ", ".join(
                f"{label} {v['recall']:.3f} (n={v['support']})"
                for label, v in m["per_class"].items()
                if v["support"]
            ),
            "confusion matrix (rows true, columns predicted):",
        ]
        width = max(len(x) for x in labels) + 1
        lines.append(" " * width + "".join(f"{x[:8]:>9}" for x in labels))
        for label, row in zip(labels, m["confusion_matrix"], strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{v:>9}" for v in row))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable file(s), e.g. {self.skipped[0]}")
        if self.unknown_classes:
            lines.append(
                "skipped frames of classes the model does not know: "
                + ", ".join(f"{c} ({n})" for c, n in sorted(self.unknown_classes.items()))
            )
        return "\n".join(lines)


def evaluate_classifier(
    clf: Classifier,
    data: Path,
    split: Path | None = None,
    blackout: bool = False,
    transform: Callable[[Image], Image] | None = None,
) -> EvalResult:
    """Classify every labelled frame of ``data`` (or of the split's validation frames).

    ``transform`` changes each decoded frame first (a robustness check); ``blackout``
    then blacks out the overlay regions.
    """
    dataset = scan(data)
    keep = read_split(split)[1] if split else None
    index = {label: i for i, label in enumerate(clf.labels)}
    truth: list[int] = []
    predicted: list[int] = []
    result = EvalResult(
        clf.card.name, clf.backend.name, str(data), {}, list(dataset.skipped), blackout=blackout
    )
    if keep is not None:
        dataset = dataset.only(keep)
        if len(dataset.samples) != len(keep):
            raise BadInputError(
                f"{data}: holds {len(dataset.samples)} of the split's {len(keep)} validation frames"
            )
    for s in dataset.samples:
        if s.label not in index:
            result.unknown_classes[s.label] += 1
    known = [label for label in dataset.labels if label in index]
    for item in dataset.select(known).load():
        if isinstance(item, Skipped):
            result.skipped.append(item)
            continue
        sample, image = item
        if transform is not None:
            image = transform(image)
        if blackout:
            image = black_out_overlays(image)
        truth.append(index[sample.label])
        predicted.append(clf.classify(image).top.index)
        result.keys.append(sample.key(dataset.root))
    result.predictions = predicted
    result.metrics = summarise(confusion_matrix(truth, predicted, len(clf.labels)), clf.labels)
    return result
