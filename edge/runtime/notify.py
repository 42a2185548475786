"""systemd's notify protocol: READY when the study is receiving, STATUS lines, and watchdog
pings only while the pipeline is moving.

Under a ``Type=notify`` unit systemd passes ``$NOTIFY_SOCKET`` (a unix datagram socket,
``@`` for the abstract namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC``. The
runtime pings at half that interval from its receiving thread, and only when inference is
not stuck: frames waiting and none inferred for ``stall_s`` is a hung pipeline, and the
pings stop so that systemd restarts the service (the study resumes: every acknowledged
frame is stored). A receiving thread that hangs stops the pings by itself.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.runtime.pipeline import Runtime

log = logging.getLogger(__name__)

STALL_S = 60.0  # frames waiting and none inferred this long: the pipeline is hung


class Notifier:
    """Datagrams to systemd's notify socket; a no-op where there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def active(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None or self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:  # systemd gone or the socket removed: the study goes on
            log.warning("notify socket %s: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (as sd_watchdog_enabled advises), if it is
    meant for this process (``$WATCHDOG_PID`` unset or ours)."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Watchdog:
    """Called every tick with the runtime: pings when due and the pipeline is moving."""

    def __init__(
        self,
        notifier: Notifier,
        interval_s: float,
        stall_s: float = STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.clock = clock
        self._last_ping = -float("inf")
        self._inferred = -1
        self._moved = clock()
        self.pings = 0
        self.stalled = False

    def __call__(self, runtime: Runtime) -> None:
        now = self.clock()
        snap = runtime.stats.counters
        inferred = int(snap.get("inferred", 0)) + int(snap.get("failed", 0))
        waiting = len(runtime.backlog)
        if inferred != self._inferred or not waiting:
            self._inferred, self._moved = inferred, now
        stalled = waiting > 0 and now - self._moved >= self.stall_s
        if stalled and not self.stalled:
            log.error(
                "inference has not moved for %.0f s with %d frames waiting: watchdog pings "
                "stop, systemd restarts the service (the study resumes)",
                now - self._moved,
                waiting,
            )
        self.stalled = stalled
        if stalled or now - self._last_ping < self.interval_s:
            return
        self._last_ping = now
        self.pings += 1
        stored = int(snap.get("stored", 0))
        self.notifier.send(
            "WATCHDOG=1", f"STATUS={stored} stored, {inferred} inferred, {waiting} waiting"
        )
