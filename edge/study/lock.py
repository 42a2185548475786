"""One runtime per study folder: an exclusive OS lock on STUDY/lock.

The lock is the kernel's (``flock``), so it goes with the process however that ends
(SIGKILL included) and a stale lock file never blocks a restart. The file holds who
took it, for the message the second process prints.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

from edge.study.errors import StudyBusyError, StudyError


class StudyLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "lock"
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StudyError(
                f"{self.path}: cannot open the study's lock ({exc.strerror})"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(self._fd) or "another process"
            os.close(self._fd)
            raise StudyBusyError(
                f"{folder}: the study is in use by {holder}; one runtime per study folder"
            ) from None
        me = f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]})"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, me.encode("utf-8", "replace"), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = -1


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
