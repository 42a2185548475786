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

    @classmethod
    def from_error(cls, source: object, error: Exception) -> Skipped:
        """A skip from an error whose message already starts with ``source: ``."""
        name = str(source)
        return cls(name, str(error).removeprefix(f"{name}: "))


@dataclass(frozen=True)
class BBox:
    """An axis-aligned box in pixels: x0 <= x < x1, y0 <= y < y1."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: BBox) -> float:
        inter = BBox(
            max(self.x0, other.x0),
            max(self.y0, other.y0),
            min(self.x1, other.x1),
            min(self.y1, other.y1),
        ).area
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clip(self, width: float, height: float) -> BBox:
        return BBox(
            min(max(self.x0, 0.0), width),
            min(max(self.y0, 0.0), height),
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
        )


@dataclass(frozen=True)
class Detection:
    """One object found in a frame, its box in the frame's pixels."""

    box: BBox
    score: float  # objectness x class probability
    label: str
    class_id: int


@dataclass(frozen=True)
class Detections:
    """Everything the detector found in one frame, best first."""

    width: int
    height: int
    items: tuple[Detection, ...]

    def __len__(self) -> int:
        return len(self.items)

    def above(self, threshold: float) -> Detections:
        """Only the detections scoring at least ``threshold``."""
        return Detections(
            self.width, self.height, tuple(d for d in self.items if d.score >= threshold)
        )
