"""Class-folder datasets: the HyperKvasir ``labeled-images`` tree and flat Kvasir folders.

A class is a folder that holds image files directly; its name is the label. The class
list always comes from the folders, so the same code serves a 5-class subset and the
full 23-class HyperKvasir download.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import BadInputError
from edge.frames import is_image_file, read_image
from edge.preprocess import Image
from edge.types import Skipped


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str

    def key(self, root: Path) -> str:
        """A stable name for the sample: its path relative to the dataset root."""
        return self.path.relative_to(root).as_posix()


@dataclass
class ClassFolderDataset:
    root: Path
    samples: list[Sample]
    class_dirs: dict[str, Path]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted(self.class_dirs)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.labels, 0)
        for s in self.samples:
            counts[s.label] += 1
        return counts

    def empty_classes(self) -> list[str]:
        return [label for label, n in self.counts().items() if n == 0]

    def select(self, classes: list[str]) -> ClassFolderDataset:
        """Only the named classes (for a task such as the original 6-class Kvasir)."""
        unknown = [c for c in classes if c not in self.class_dirs]
        if unknown:
            raise BadInputError(
                f"{self.root}: no class folder named {', '.join(unknown)} "
                f"(found: {', '.join(self.labels)})"
            )
        keep = set(classes)
        return ClassFolderDataset(
            self.root,
            [s for s in self.samples if s.label in keep],
            {c: d for c, d in self.class_dirs.items() if c in keep},
            list(self.skipped),
        )

    def only(self, keys: set[str]) -> ClassFolderDataset:
        """Only the samples named by ``keys`` (see ``Sample.key``), e.g. a validation split."""
        return ClassFolderDataset(
            self.root,
            [s for s in self.samples if s.key(self.root) in keys],
            self.class_dirs,
            list(self.skipped),
        )

    def load(self) -> Iterator[tuple[Sample, Image] | Skipped]:
        """Decoded frames; an unreadable file becomes a ``Skipped`` naming it."""
        for sample in self.samples:
            try:
                yield sample, read_image(sample.path)
            except BadInputError as exc:
                yield Skipped.from_error(sample.path, exc)


def scan(root: str | Path) -> ClassFolderDataset:
    """Index a class-folder tree without decoding anything.

    Raises ``BadInputError`` for a missing or empty root, or two class folders that share
    a name. Files that are not images by name become ``Skipped`` entries. A leaf folder
    without images is kept as an empty class so the caller can name it.
    """
    root = Path(root)
    if not root.exists():
        raise BadInputError(f"{root}: no such folder")
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder")
    class_dirs: dict[str, Path] = {}
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        entries = sorted(folder.iterdir())
        images = [p for p in entries if p.is_file() and is_image_file(p)]
        has_subdirs = any(p.is_dir() and not p.name.startswith(".") for p in entries)
        if folder == root and images:
            skipped.extend(Skipped(str(p), "image outside any class folder") for p in images)
            continue
        if not images and (has_subdirs or folder == root):
            continue
        label = folder.name
        if label in class_dirs:
            raise BadInputError(
                f"{root}: class {label!r} appears twice ({class_dirs[label]} and {folder})"
            )
        class_dirs[label] = folder
        samples.extend(Sample(p, label) for p in images)
        skipped.extend(
            Skipped(str(p), "not an image file (by its name)")
            for p in entries
            if p.is_file() and not is_image_file(p) and not p.name.startswith(".")
        )
    if not class_dirs:
        raise BadInputError(f"{root}: no class folders with images found")
    return ClassFolderDataset(root, samples, class_dirs, skipped)


def read_split(split: Path) -> tuple[set[str], set[str]]:
    """The training and validation keys of a ``split.json`` (as training writes it)."""
    try:
        doc = json.loads(split.read_text(encoding="utf-8"))
        return {str(k) for k in doc["train"]}, {str(k) for k in doc["validation"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{split}: not a split file with train/validation ({exc})") from None
