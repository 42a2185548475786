"""Value types shared by the runtime: small, frozen, and free of backend details."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassScore:
    """One class and its probability."""

    label: str
    index: int
    score: float


@dataclass(frozen=True)
class Classification:
    """Result of classifying one frame: every class score, best first."""

    scores: tuple[ClassScore, ...]

    @property
    def top(self) -> ClassScore:
        return self.scores[0]


@dataclass(frozen=True)
class Skipped:
    """An input that could not be used, and why (one line, naming the file)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"
