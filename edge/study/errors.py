"""What can go wrong with a study folder: each a one-line message naming the folder."""

from __future__ import annotations

from edge.errors import CapsuleEdgeError


class StudyError(CapsuleEdgeError):
    """A study folder that cannot be used as it is (damaged, inconsistent, too new)."""


class StudyBusyError(StudyError):
    """Another process holds the study."""


class StorageError(StudyError):
    """The study cannot take more frames (disk full, read-only, removed): stop before
    anything more is acknowledged."""


class CorruptFrameError(StudyError):
    """A stored frame's bytes no longer match the CRC recorded when it arrived."""
