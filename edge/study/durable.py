"""A folder's entries made durable: after a file is created, renamed or removed, the
folder itself is fsync'ed, or a power cut can lose the name even though the bytes are
on disk."""

from __future__ import annotations

import os
from pathlib import Path


def sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
