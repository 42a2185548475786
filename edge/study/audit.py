"""The study's audit trail: who read it, when, and what they took out.

``audit.log`` in the study folder, one JSON line per read (``study show``, ``verify``,
``export``, ``report``): the time (UTC), the user and uid, the host, the command and what
it wrote out. A file of its own, appended with O_APPEND (a line is one small write, so
lines from two readers never interleave), owner-only like the rest of the study, and
never in study.db: a reader takes no lock and must not contend with the runtime writing.
A study the reader may not write to is still read; the line that says it was not
audited goes to standard error.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from edge.study.archive import PRIVATE_FILE

AUDIT_FILE = "audit.log"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record(folder: Path, action: str, **what: Any) -> bool:
    """Append one entry; False (and a line on stderr) when it could not be written."""
    entry = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "user": _user(),
        "uid": os.getuid(),
        "host": socket.gethostname(),
        "action": action,
        **{k: str(v) if isinstance(v, Path) else v for k, v in what.items() if v is not None},
    }
    line = (json.dumps(entry, sort_keys=False) + "\n").encode()
    try:
        fd = os.open(folder / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        print(
            f"capsule-edge: warning: {folder}: this {action} was not audited ({exc.strerror})",
            file=sys.stderr,
        )
        return False
    return True


def entries(folder: Path) -> list[dict[str, Any]]:
    """The trail, oldest first; a damaged line is kept as ``{"unreadable": text}``."""
    try:
        text = (folder / AUDIT_FILE).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append({"unreadable": line})
    return out
